"""Steady state detected, not assumed: window layout, the focus region, and early-stopped vs full-length fields."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.config import SimConfig, get_preset
from tfus.sim.lockin import LockIn, focus_region, lockin_plan
from tfus.sim.solver import MediumArrays, solve_steady_state
from tfus.sim.source import BowlSource


def test_windows_end_at_the_cap_and_start_after_the_ramp():
    plan = lockin_plan(n_steps=220, window_steps=20, points_per_period=10, ramp_cycles=2, tol=0.002)
    assert plan.first_start >= 20 and (plan.n_steps - plan.first_start) % 20 == 0
    assert plan.first_start == 20  # 10 windows fit after the 2-period ramp
    assert lockin_plan(40, 20, 10, 5, 0.0).first_start == 0  # always two windows
    with pytest.raises(ValueError, match="tol"):
        lockin_plan(220, 20, 10, 2, 1.5)


def test_a_steady_sine_gives_its_amplitude_and_stops_after_two_windows():
    box, ppp = (4, 3, 5), 12
    plan = lockin_plan(20 * ppp, 2 * ppp, ppp, 2, 1e-3)
    amp = np.linspace(1.0, 2.0, 60).reshape(box)
    lockin, n = LockIn(np, box, np.float64, plan), 0
    for n in range(plan.n_steps):
        if lockin.add(n, amp * np.cos(2 * np.pi * n / ppp + 0.3)):
            break
    assert n + 1 == plan.first_start + 2 * plan.window_steps and lockin.last_change < 1e-12
    re, im = lockin.windows()[1]
    np.testing.assert_allclose(2.0 / plan.window_steps * np.hypot(re, im), amp, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_accumulation_matches_numpy_on_a_cropped_view(dtype):
    """The engine's one-pass lock-in kernel (sim.kernels) on the box cropped from a padded grid, as the loop
    gives it, against the NumPy passes."""
    from tfus.sim.kernels import FusedKernels, available

    if not available():
        pytest.skip("numba not installed")
    box, ppp = (7, 6, 5), 8
    plan = lockin_plan(6 * ppp, 2 * ppp, ppp, 0, 0.0)
    fused, plain = (LockIn(np, box, dtype, plan, fused=k) for k in (FusedKernels(dtype), None))
    rng = np.random.default_rng(3)
    for n in range(plan.n_steps):
        padded = rng.standard_normal((11, 10, 9)).astype(dtype)
        view = padded[2:9, 2:8, 2:7]
        fused.add(n, view)
        plain.add(n, view)
    for a, b in zip(fused.windows(), plain.windows()):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    assert np.abs(fused.windows()[1][0]).max() > 1.0


def test_focus_region_is_the_box_beyond_the_rim_plane():
    mask = focus_region((20, 10, 10), (1.0, 5.0, 5.0), (21.0, 5.0, 5.0), 30e-3, 26e-3, 1.5e-3)
    depth = (30 - np.sqrt(30**2 - 13**2)) / 1.5  # rim height in voxels (~2)
    assert not mask[: int(1 + depth)].any() and mask[int(np.ceil(1 + depth + 1e-9)):].all()


def _case(slab: bool):
    box = (32, 32, 32)
    c = np.full(box, 1500.0, np.float32)
    rho = np.full(box, 1000.0, np.float32)
    alpha = np.zeros(box, np.float32)
    if slab:  # bone-like slab between the bowl and its focus
        c[8:12], rho[8:12], alpha[8:12] = 2800.0, 1900.0, 20.0
    bowl = BowlSource((1.0, 16.0, 16.0), (21.0, 16.0, 16.0), 30e-3, 26e-3)
    return MediumArrays(c, rho, alpha if slab else None, 2.0), bowl


@pytest.mark.parametrize("slab", [False, True], ids=["water", "slab"])
def test_early_stop_matches_the_full_length_field(slab):
    medium, bowl = _case(slab)
    cfg = get_preset("test")
    full = solve_steady_state(medium, bowl, 200e3, 60e3, 1.5e-3, cfg.replace(steady_tol=0.0), progress=False)
    early = solve_steady_state(medium, bowl, 200e3, 60e3, 1.5e-3, cfg.replace(steady_tol=0.002), progress=False)
    assert full.info["steps_run"] == full.time.n_steps and full.info["steps_saved"] == 0
    assert early.info["steps_saved"] > 0 and early.info["steady_change"] < 0.002
    assert early.info["steps_run"] + early.info["steps_saved"] == early.time.n_steps
    rel = np.linalg.norm(early.amplitude_pa - full.amplitude_pa) / np.linalg.norm(full.amplitude_pa)
    assert rel < 0.005, f"early-stopped field differs by {rel:.2%} (rel. L2)"


def test_steady_tol_is_in_the_key_unless_off():
    import hashlib
    import json

    fixed = SimConfig(steady_tol=0.0)
    old = {k: v for k, v in fixed.to_dict().items() if k not in ("preset", "engine", "steady_tol", "grid", "aim_tilt_deg")}
    old["transducer"] = {k: old["transducer"][k] for k in ("frequency_hz", "roc_mm", "aperture_mm", "amplitude_pa")}
    # a fixed-length config keeps the key it had before the field existed
    assert fixed.key() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    assert SimConfig(steady_tol=0.002).key() != fixed.key()
    with pytest.raises(ValueError, match="steady_tol"):
        SimConfig(steady_tol=-0.1)


@pytest.fixture(scope="module")
def demo_head():
    from tfus.sim.phantom import make_phantom
    from tfus.sim.placement import plan_placements

    head = make_phantom(0, spacing_mm=1.5)
    placement = plan_placements(head, 1, 0, get_preset("demo"))[0]
    return head, placement


@pytest.mark.parametrize("medium", ["skull", "water"])
def test_early_stop_on_the_demo_preset_matches_the_full_length_field(demo_head, medium):
    """The demo preset end to end (``simulate`` / ``simulate_free_field`` on the same window): the early-stopped
    field is the full-length one within 0.5 % relative L2, and it ran fewer steps."""
    from tfus.sim.simulation import simulate, simulate_free_field
    from tfus.sim.window import plan_window

    head, placement = demo_head
    cfg = get_preset("demo")
    affine, _, _ = plan_window(head, placement.position_mm, placement.target_mm, cfg)
    fields = {}
    for tol in (0.0, cfg.steady_tol):
        config = cfg.replace(steady_tol=tol)
        if medium == "skull":
            fields[tol] = simulate(head, placement.position_mm, placement.target_mm, config, progress=False)
        else:
            fields[tol] = simulate_free_field(placement.position_mm, placement.target_mm, config, affine,
                                              progress=False)
    full, early = fields[0.0], fields[cfg.steady_tol]
    assert full.summary["time_steps_saved"] == 0 and early.summary["time_steps_saved"] > 0
    rel = np.linalg.norm(early.pressure_pa - full.pressure_pa) / np.linalg.norm(full.pressure_pa)
    assert rel < 0.005, f"{medium}: early-stopped field differs by {rel:.3%} (rel. L2)"
