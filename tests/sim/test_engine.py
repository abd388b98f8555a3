"""sim.engine.KSpaceEngine against k-wave-python's own ``Simulation.step``, step for step.

Both are built by ``sim.solver`` from the same box (PML outside, edge padding), the same bowl weights and the
same drive signal: k-wave-python's stepper with ``StreamingPressureSource`` (``_build_stepper("kwave")``),
the engine with ``_build_stepper("tfus")``. 200 steps carry the wave through the slab into the PML.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.config import SimConfig, get_preset
from tfus.sim.engine import EngineConfig, KSpaceEngine, pml_profile
from tfus.sim.solver import (MediumArrays, _build_stepper, absorbing_dt_limit, make_time_axis, padded_layout)
from tfus.sim.source import BowlSource, bowl_grid_weights, drive_signal

DX_M, F_HZ = 1.5e-3, 200e3
CONFIG = get_preset("test")  # PML 8, CFL 0.5, float32


def _medium(box, slab: bool) -> MediumArrays:
    c = np.full(box, 1500.0, np.float32)
    rho = np.full(box, 1000.0, np.float32)
    alpha = np.zeros(box, np.float32)
    if slab:  # bone-like slab across the beam, between the bowl and its focus
        c[10:14], rho[10:14], alpha[10:14] = 2800.0, 1900.0, 20.0  # alpha in dB/(MHz^2 cm)
    return MediumArrays(c, rho, alpha if slab else None, 2.0)


def _steppers(box, slab: bool, device: str = "cpu"):
    medium = _medium(box, slab)
    taxis = make_time_axis(box, DX_M, 1500.0, float(medium.sound_speed.max()), F_HZ, CONFIG,
                           dt_limit=absorbing_dt_limit(medium, DX_M))
    padded, _ = padded_layout(box, CONFIG.pml_size)
    centre = (box[1] / 2, box[2] / 2)
    bowl = BowlSource((2.0, *centre), (22.0, *centre), 30e-3, 26e-3)
    weights = bowl_grid_weights(bowl, padded, CONFIG.pml_size, DX_M)
    signal = drive_signal(taxis.n_steps, taxis.dt, F_HZ, 60e3, CONFIG.ramp_cycles)
    args = (medium, taxis, DX_M, CONFIG, "cpu", weights, signal, None)
    gpu_args = (medium, taxis, DX_M, CONFIG, device, weights, signal, None)
    return _build_stepper("kwave", *args), _build_stepper("tfus", *gpu_args)


@pytest.mark.parametrize("box, slab", [((32, 32, 32), True), ((30, 28, 29), False)],
                         ids=["slab-48^3", "water-48x45x45"])
def test_engine_matches_kwave_step_for_step(box, slab):
    (ref, n_ref, _), (eng, n_eng, info) = _steppers(box, slab)
    assert n_ref == n_eng > 0 and eng.shape == ref.grid_shape and eng.c_ref == pytest.approx(ref.c_ref)
    for _ in range(200):
        ref.step()
        eng.step()
    p_ref = np.asarray(ref.p)
    peak = float(np.abs(p_ref).max())
    assert peak > 1e4  # the wave is there (60 kPa source)
    err = float(np.abs(p_ref - eng.p).max()) / peak
    assert err < 1e-4, f"max |dp| / peak = {err:.2e} after 200 steps"
    assert eng.p.dtype == np.float32 and eng.t == ref.t == 200
    assert info["fft_backend"] == "fftw" and eng.kernels == "numba"  # the defaults are what was checked


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_kernels_match_the_numpy_updates(dtype):
    """sim.kernels (one pass per update) against the engine's NumPy updates: same field to rounding."""
    a = _small_engine(kernels="numba", dtype=dtype).run(80)
    b = _small_engine(kernels="numpy", dtype=dtype).run(80)
    assert a.kernels == "numba" and b.kernels == "numpy" and a.p.dtype == np.dtype(dtype)
    peak = float(np.abs(b.p).max())
    assert peak > 1e3
    assert float(np.abs(a.p - b.p).max()) < (1e-5 if dtype == "float32" else 1e-12) * peak


def _small_engine(n=24, **cfg) -> KSpaceEngine:
    c = np.full((n,) * 3, 1500.0, np.float32)
    c[:, :, 8:11] = 2800.0
    rho = np.where(c > 2000, 1900.0, 1000.0).astype(np.float32)
    alpha = np.where(c > 2000, 20.0, 0.0).astype(np.float32)
    weights = np.zeros((n,) * 3)
    weights[6, n // 2 - 2:n // 2 + 2, n // 2 - 2:n // 2 + 2] = 1.0
    signal = 1e4 * np.sin(0.3 * np.arange(400))
    return KSpaceEngine(c, rho, alpha, 2.0, weights, signal, EngineConfig(DX_M, 1e-7, 6, 2.0, **cfg))


_TRACE_SCRIPT = """
import json, sys, tracemalloc
sys.path.insert(0, {tests!r})
from test_engine import _small_engine
eng = _small_engine(48, **{cfg!r})
eng.run(3)
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
tracemalloc.reset_peak()
eng.run(5)
current, peak = tracemalloc.get_traced_memory()
print(json.dumps({{"kept": current - base, "peak": peak - base, "grid": eng.p.nbytes, "backend": eng.fft.backend,
                  "kernels": eng.kernels, "workers": eng.fft_workers}}))
"""


def _traced_steps(**cfg) -> dict:
    """Allocations of 5 steps, traced in a fresh interpreter: tracemalloc counts every thread of a process,
    and the test session's background threads (Prefect, Dask, logging) allocate while these steps run."""
    import json
    import os
    import subprocess
    import sys

    code = _TRACE_SCRIPT.format(tests=os.path.dirname(__file__), cfg=cfg)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("library, backend", [("fftw", "fftw"), ("pocketfft", "pocketfft (out=)")])
def test_step_allocates_no_grid_sized_arrays(library, backend):
    r = _traced_steps(fft_library=library, kernels="numpy")
    assert r["backend"] == backend
    assert r["kept"] < 16_384  # nothing kept
    # nothing grid-sized on the way: only NumPy's ufunc buffer for complex·real (8192 elements, 64 KiB) in
    # each slab thread, plus the threads' bookkeeping (futures, closures)
    limit = 64 * 1024 * r["workers"] + 32 * 1024
    assert r["peak"] < limit < r["grid"] / 2


def test_fused_step_allocates_no_grid_sized_arrays():
    r = _traced_steps()
    assert r["kernels"] == "numba" and r["backend"] == "fftw"
    assert r["kept"] < 16_384 and r["peak"] < r["grid"] / 8


def test_fft_libraries_and_threads_give_the_same_field():
    a = _small_engine(fft_workers=1, fft_library="fftw").run(60)
    assert a.fft.backend == "fftw" and a.fft.inverse_scale == pytest.approx(1 / 24 ** 3)
    for library, workers, backend in (("pocketfft", 2, "pocketfft (out=)"), ("scipy", 2, "scipy.fft"),
                                      ("fftw", 2, "fftw")):
        b = _small_engine(fft_workers=workers, fft_library=library).run(60)
        assert b.fft.backend == backend
        np.testing.assert_allclose(a.p, b.p, atol=1e-5 * float(np.abs(a.p).max()))


@pytest.mark.parametrize("staggered", [False, True])
def test_pml_profile_is_kwaves(staggered):
    from tfus.sim.kwave_import import kwave_modules

    kwave_modules()
    from kwave.utils.pml import get_pml

    ref = get_pml(50, 1.5e-3, 1e-7, 2800.0, 8, 2.0, staggered=staggered, dimension=2).ravel()
    np.testing.assert_allclose(pml_profile(50, 1.5e-3, 1e-7, 2800.0, 8, 2.0, staggered), ref, rtol=1e-12)


def test_engine_refuses_power_law_absorption_and_bad_shapes():
    with pytest.raises(ValueError, match="alpha_power"):
        KSpaceEngine(np.full((8,) * 3, 1500.0), np.full((8,) * 3, 1000.0), np.ones((8,) * 3), 1.5,
                     np.ones((8,) * 3), np.zeros(4), EngineConfig(DX_M, 1e-7, 2))
    with pytest.raises(ValueError, match="weights"):
        KSpaceEngine(np.full((8,) * 3, 1500.0), np.full((8,) * 3, 1000.0), None, 2.0, np.ones((8, 8, 9)),
                     np.zeros(4), EngineConfig(DX_M, 1e-7, 2))
    with pytest.raises(ValueError, match="device"):
        EngineConfig(DX_M, 1e-7, device="tpu")
    with pytest.raises(ValueError, match="fft_library"):
        EngineConfig(DX_M, 1e-7, fft_library="mkl")
    with pytest.raises(ValueError, match="kernels"):
        EngineConfig(DX_M, 1e-7, kernels="cython")


def test_engine_is_a_config_field_outside_the_key():
    base = SimConfig()
    assert base.engine == "tfus"
    assert base.replace(engine="kwave").key() == base.key()
    assert SimConfig.from_dict(base.replace(engine="kwave").to_dict()).engine == "kwave"
    with pytest.raises(ValueError, match="engine"):
        SimConfig(engine="cuda")


def test_gpu_engine_matches_kwave_step_for_step():
    """The CuPy engine against k-wave-python's CPU step (the reference), 200 steps through the slab."""
    pytest.importorskip("cupy")
    (ref, _, _), (eng, _, _) = _steppers((32, 32, 32), True, device="gpu")
    for _ in range(200):
        ref.step()
        eng.step()
    p_ref = np.asarray(ref.p)
    err = float(np.abs(p_ref - eng.p.get()).max()) / float(np.abs(p_ref).max())
    assert err < 1e-4, f"GPU: max |dp| / peak = {err:.2e} after 200 steps"


def test_gpu_engine_matches_cpu():
    pytest.importorskip("cupy")
    cpu = _small_engine().run(60)
    gpu = _small_engine(device="gpu").run(60)
    np.testing.assert_allclose(gpu.p.get(), cpu.p, atol=1e-5 * float(np.abs(cpu.p).max()))


@pytest.mark.parametrize("flag, expected", [([], "tfus"), (["--engine", "kwave"], "kwave")])
def test_simulate_cli_passes_the_engine_into_the_config(flag, expected):
    from tfus.flows.cli import build_parser
    from tfus.flows.cli.sim_cmds import build_config

    args = build_parser().parse_args(["simulate", "--ct", "ct.nii.gz", "--position", "0", "0", "0",
                                      "--target", "0", "0", "-1", "--preset", "test", "--out", "o", *flag])
    assert build_config(args).engine == expected
