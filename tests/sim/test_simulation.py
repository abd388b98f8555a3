"""`simulate` / `tfus simulate` end to end through a phantom skull, the free-field case, and bad input."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest

from tfus.flows.cli import main as tfus
from tfus.sim.config import TransducerConfig, get_preset
from tfus.sim.ingest import save_nifti
from tfus.sim.memory import estimate_memory_bytes
from tfus.sim.phantom import make_phantom
from tfus.sim.simulation import simulate_free_field, write_simulation

# A focused bowl R = D = 40 mm at 5 points per wavelength in water. Default suite: 150 kHz on a 2 mm grid
# (gain k·h ≈ 3.4, ~1.5 min loaded); slow variant: 200 kHz on 1.5 mm (gain ≈ 4.5, ~3 min loaded).
CONFIGS = {
    "2mm": get_preset("test").replace(
        transducer=TransducerConfig(frequency_hz=150e3, roc_mm=40.0, aperture_mm=40.0, amplitude_pa=50e3),
        spacing_mm=2.0, window_shape=(26, 26, 30), extra_cycles=3.0),
    "1.5mm": get_preset("test").replace(
        transducer=TransducerConfig(frequency_hz=200e3, roc_mm=40.0, aperture_mm=40.0, amplitude_pa=50e3),
        window_shape=(34, 34, 40)),
}
CONFIG = CONFIGS["2mm"]


def _scalp_top_mm(volume) -> float:
    i, j = np.round(volume.world_to_voxel([0.0, 0.0, 0.0])[:2]).astype(int)
    k = int(np.nonzero(np.abs(volume.hu[i, j, :]) > 5)[0].max())
    return float(volume.voxel_to_world([i, j, k])[2])


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    volume = make_phantom(3, spacing_mm=1.5, scale=0.5)
    path = save_nifti(volume.hu, volume.affine, tmp_path_factory.mktemp("ct") / "head.nii.gz")
    bowl_depth = 40 - math.sqrt(40**2 - 20**2)
    position = (0.0, 0.0, _scalp_top_mm(volume) + 5.0 + bowl_depth)
    target = (0.0, 0.0, position[2] - 40.0)  # geometric focus ~ 1.5 cm below the skull
    return path, position, target


@pytest.fixture(scope="module", params=["2mm", pytest.param("1.5mm", marks=pytest.mark.slow)])
def cli_run(head, tmp_path_factory, request):
    path, position, target = head
    config = CONFIGS[request.param]
    cfg_file = tmp_path_factory.mktemp("cfg") / "sim.json"
    cfg_file.write_text(json.dumps({**config.to_dict(), "preset": "custom"}))
    out = tmp_path_factory.mktemp("run") / "sim"
    rc = tfus(["simulate", "--ct", str(path), "--position", *map(str, position), "--target", *map(str, target),
               "--preset", str(cfg_file), "--no-progress", "--out", str(out)])
    assert rc == 0
    return out, config


def test_cli_writes_the_four_outputs_on_the_grid(cli_run, head):
    out, config = cli_run
    assert sorted(p.name for p in out.iterdir()) == ["ct.nii.gz", "pressure.nii.gz", "preview.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    pressure, ct = nib.load(out / "pressure.nii.gz"), nib.load(out / "ct.nii.gz")
    assert pressure.get_data_dtype() == np.float32
    assert pressure.shape == ct.shape == tuple(summary["grid_shape"]) == config.window_shape
    np.testing.assert_allclose(pressure.affine, summary["affine"], atol=1e-5)
    np.testing.assert_allclose(ct.affine, pressure.affine)
    p = np.asarray(pressure.dataobj)
    assert np.isfinite(p).all() and p.min() >= 0
    idx = tuple(summary["focal_index"])
    assert p[idx] == pytest.approx(summary["peak_pressure_pa"], rel=1e-6)
    np.testing.assert_allclose(pressure.affine[:3, :3] @ idx + pressure.affine[:3, 3], summary["focal_point_mm"])
    for key in ("focal_volume_mm3", "time_steps", "runtime_s", "convergence", "spacing_mm", "inputs", "config"):
        assert key in summary
    assert summary["inputs"]["position_mm"] == list(head[1])
    assert summary["config"]["transducer"]["roc_mm"] == 40.0
    assert summary["convergence"] < 0.02
    assert np.asarray(ct.dataobj).max() > 700  # the skull is on the grid
    assert (out / "preview.png").stat().st_size > 5_000


def test_skull_lowers_the_peak_and_keeps_the_focus_near_the_aim(cli_run, head):
    _, position, target = head
    out, config = cli_run
    summary = json.loads((out / "summary.json").read_text())
    water = simulate_free_field(position, target, config, summary["affine"], progress=False)
    ws = water.summary
    assert np.isfinite(water.pressure_pa).all() and water.pressure_pa.min() >= 0
    assert summary["peak_pressure_pa"] < 0.9 * ws["peak_pressure_pa"]
    wavelength_mm = 1500 / config.transducer.frequency_hz * 1e3
    shift = np.linalg.norm(np.subtract(summary["focal_point_mm"], ws["focal_point_mm"]))
    assert shift < 1.5 * wavelength_mm, (summary["focal_point_mm"], ws["focal_point_mm"])
    # the water focus is on the beam axis, between the bowl and (pre-focal shift) the geometric focus
    axis = np.subtract(target, position) / np.linalg.norm(np.subtract(target, position))
    rel = np.subtract(ws["focal_point_mm"], position)
    assert np.linalg.norm(rel - (rel @ axis) * axis) <= config.spacing_mm * 0.87
    assert 0.4 * config.transducer.roc_mm < rel @ axis <= config.transducer.roc_mm + config.spacing_mm


@pytest.mark.parametrize("change, message", [
    (lambda a: a.__setitem__(2, "missing.nii.gz"), "missing.nii.gz"),
    (lambda a: a.__setitem__(slice(4, 7), ["0", "0", "500"]), "outside the CT"),
    (lambda a: a.__setitem__(slice(8, 11), a[4:7]), "must differ"),
    (lambda a: a.extend(["--aperture-mm", "90", "--roc-mm", "40"]), "twice"),
    (lambda a: a.extend(["--spacing-mm", "3.0"]), "points per wavelength"),
    (lambda a: a.extend(["--spacing-mm", "0.05"]), "GiB"),
])
def test_bad_input_gives_one_line_and_no_output(head, tmp_path, capsys, change, message, monkeypatch):
    monkeypatch.setenv("TFUS_MEMORY_LIMIT_BYTES", str(2 * 2**30))
    path, position, target = head
    out = tmp_path / "out"
    argv = ["simulate", "--ct", str(path), "--position", *map(str, position), "--target", *map(str, target),
            "--preset", "test", "--frequency-hz", "200000", "--crop-mm", "60", "--no-progress", "--out", str(out)]
    change(argv)
    assert tfus(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_nan_ct_is_refused(tmp_path, capsys):
    hu = np.zeros((20, 20, 20), np.float32)
    hu[3, 3, 3] = np.nan
    path = save_nifti(hu, np.diag([2.0, 2, 2, 1]), tmp_path / "nan.nii.gz")
    rc = tfus(["simulate", "--ct", str(path), "--position", "10", "10", "30", "--target", "10", "10", "0",
               "--preset", "test", "--out", str(tmp_path / "o")])
    assert rc == 2 and "NaN" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_write_leaves_nothing_that_looks_complete(cli_run, tmp_path):
    from tfus.sim.simulation import SimResult
    from tfus.sim.window import Window

    good = nib.load(cli_run[0] / "pressure.nii.gz")
    window = Window(np.zeros(good.shape, np.float32), good.affine, np.zeros((16, 3), np.float32))
    broken = SimResult(np.asarray(good.dataobj), np.zeros(good.shape, np.float32), window, summary={})
    with pytest.raises(KeyError):
        write_simulation(broken, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_memory_estimate_grows_with_the_grid_and_covers_the_pml():
    from tfus.sim.memory import BASELINE_BYTES as BASE, BOWL_SETUP_BYTES

    BASELINE_BYTES = BASE + BOWL_SETUP_BYTES  # noqa: N806  (the grid-independent part)

    kw = CONFIG.replace(engine="kwave")
    small = estimate_memory_bytes(kw, (32, 32, 32)) - BASELINE_BYTES
    big = estimate_memory_bytes(kw, (64, 64, 64)) - BASELINE_BYTES
    assert 4 * small < big < 10 * small
    # measured (docs/PERFORMANCE.md): 64³ box, PML 10 -> 136 MB of traced NumPy buffers (k-wave's step)
    assert estimate_memory_bytes(kw.replace(pml_size=10), (64, 64, 64)) - BASELINE_BYTES > 136 * 2**20
    assert estimate_memory_bytes(kw, (256, 256, 256)) > 256**3 * 4 * 20
    fast = CONFIG.replace(engine="tfus")
    assert estimate_memory_bytes(fast, (64, 64, 64)) < estimate_memory_bytes(kw, (64, 64, 64))


def test_memory_estimate_of_the_fast_engine_covers_what_a_simulation_holds():
    """Traced peak of a whole tfus-engine solve (set-up included) against the estimate, minus the baseline."""
    import tracemalloc

    from tfus.sim.kwave_import import kwave_modules
    from tfus.sim.memory import BASELINE_BYTES
    from tfus.sim.solver import MediumArrays, solve_steady_state
    from tfus.sim.source import BowlSource

    kwave_modules()  # the imports' own allocations belong to BASELINE_BYTES, not to the simulation
    box = (40, 40, 40)
    c = np.full(box, 1500.0, np.float32)
    rho = np.full(box, 1000.0, np.float32)
    alpha = np.zeros(box, np.float32)
    c[:, :, 14:18], rho[:, :, 14:18], alpha[:, :, 14:18] = 2800.0, 1900.0, 20.0
    config = CONFIG.replace(engine="tfus", steady_tol=0.0, extra_cycles=0)
    bowl = BowlSource((20.0, 20.0, 2.0), (20.0, 20.0, 30.0), 40e-3, 36e-3)
    tracemalloc.start()
    try:
        solve_steady_state(MediumArrays(c, rho, alpha, 2.0), bowl, 200e3, 60e3, 1.5e-3, config, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = estimate_memory_bytes(config, box) - BASELINE_BYTES
    assert peak < estimate < 2.0 * peak, f"estimate {estimate / 2**20:.1f} MB, traced peak {peak / 2**20:.1f} MB"


def test_kwave_binary_failure_is_one_clear_error():
    """The C++ path writes its HDF5 input and reports a failing executable in one line (no binary here)."""
    from tfus.sim.config import SimConfig
    from tfus.sim.solver import MediumArrays
    from tfus.sim.solver_cpp import solve_steady_state_cpp
    from tfus.sim.source import BowlSource

    args = (MediumArrays.water((24, 24, 24)), BowlSource((2, 12, 12), (20, 12, 12), 15e-3, 15e-3), 300e3, 6e4,
            1e-3, SimConfig(pml_size=6, cfl=0.5))
    with pytest.raises(ValueError, match="failed"):
        solve_steady_state_cpp(*args, binary="/bin/false")
    with pytest.raises(FileNotFoundError, match="not an executable"):
        solve_steady_state_cpp(*args, binary="/nonexistent/kspaceFirstOrder-OMP")
