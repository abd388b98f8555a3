"""Annular arrays: the transducer library, bad input, steering phases, the source terms, and the field."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tfus.sim.config import SimConfig, TransducerConfig, get_preset, load_sim_config, with_overrides
from tfus.sim.transducers import LIBRARY, TransducerSpec, load_transducer, ring_mid_points_mm, steering_phases


def test_library_has_the_devices_with_their_published_geometry():
    ctx = LIBRARY["ctx500"]
    assert ctx.rings_mm == ((0.0, 32.5), (33.0, 45.8), (46.2, 55.6), (56.1, 64.0))
    assert (ctx.roc_mm, ctx.aperture_mm, ctx.exit_plane_to_focus_mm, ctx.focal_range_mm) == \
        (63.2, 64.0, 56.87, (33.0, 80.0))
    assert LIBRARY["ctx560"].frequency_hz == 560e3 and LIBRARY["ctx560"].rings_mm == ctx.rings_mm
    assert LIBRARY["ctx250"].exit_plane_to_focus_mm == 52.38 and LIBRARY["ctx250"].focal_range_mm == (25.0, 60.0)
    dpx = LIBRARY["dpx500"]
    assert dpx.roc_mm == 144.9 and len(dpx.rings_mm) == 4 and dpx.rings_mm[-1][1] == 64.0
    assert "assumed" in dpx.notes
    assert not LIBRARY["bowl-demo"].is_array


@pytest.mark.parametrize("rings, match", [
    (((0, 30), (29, 40)), "overlaps ring 0"),
    (((0, 30), (31, 70)), "exceeds the bowl's aperture"),
    (((10, 5),), "inner < outer"),
])
def test_bad_rings_are_one_clear_line(rings, match):
    with pytest.raises(ValueError, match=match):
        TransducerConfig(500e3, 63.2, 64.0, 60e3, "custom", rings)
    with pytest.raises(ValueError, match=match):
        TransducerSpec("custom", 500e3, 63.2, 64.0, rings)


def test_bad_steering_and_phase_lists():
    t = TransducerConfig.from_library("ctx500")
    with pytest.raises(ValueError, match="outside transducer 'ctx500'.s steering range 33-80 mm"):
        TransducerConfig.from_library("ctx500", focal_distance_mm=95.0)
    with pytest.raises(ValueError, match="3 values for 4 rings"):
        TransducerConfig(t.frequency_hz, t.roc_mm, t.aperture_mm, 60e3, "ctx500", t.rings_mm, (),
                         (0.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="needs an annular array"):
        TransducerConfig(focal_distance_mm=40.0)
    with pytest.raises(ValueError, match="unknown transducer 'ctx900'"):
        load_transducer("ctx900")


def test_custom_transducer_from_yaml(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("frequency_hz: 300000\nroc_mm: 50\naperture_mm: 48\n"
                    "rings_mm: [[0, 30], [31, 48]]\nfocal_range_mm: [20, 60]\n")
    config = with_overrides(get_preset("demo"), transducer=str(path), focal_distance_mm=35.0)
    tr = config.transducer
    assert tr.name == "custom" and tr.rings_mm == ((0.0, 30.0), (31.0, 48.0)) and tr.frequency_hz == 300e3
    assert len(tr.ring_phases()) == 2 and tr.ring_phases()[0] == 0.0
    assert SimConfig.from_dict(config.to_dict()) == config  # survives the summary's JSON
    (tmp_path / "bad.yaml").write_text("roc_mm: 50\naperture_mm: 48\nrings: [[0, 30]]\n")
    with pytest.raises(ValueError, match="unknown transducer field.*rings"):
        load_transducer(str(tmp_path / "bad.yaml"))


def test_single_bowl_keys_are_unchanged_and_arrays_change_the_key(tmp_path):
    demo = get_preset("demo")
    # the key of the demo preset before annular arrays existed (datasets made then stay complete)
    assert demo.key() == "4271514b60ecc58c24255e81aa6aa37074d61c913d6c73984abf8331c99bbc13"
    a = demo.replace(transducer=TransducerConfig.from_library("ctx500", focal_distance_mm=40.0))
    b = demo.replace(transducer=TransducerConfig.from_library("ctx500", focal_distance_mm=60.0))
    assert len({demo.key(), a.key(), b.key()}) == 3


def test_steering_phases_bring_every_ring_in_phase_at_the_focus():
    t = LIBRARY["ctx500"]
    for dist in (33.0, 50.0, 80.0):
        phases = steering_phases(t.roc_mm, t.aperture_mm, t.rings_mm, t.exit_plane_to_focus_mm, dist, 500e3)
        z_focus = t.roc_mm - t.exit_plane_to_focus_mm + dist
        mid = ring_mid_points_mm(t.roc_mm, t.rings_mm)
        d = np.hypot(mid[:, 0], z_focus - mid[:, 1]) * 1e-3
        k = 2 * math.pi * 500e3 / 1500.0
        arrival = np.angle(np.exp(1j * (phases - k * d)))
        assert np.allclose(np.angle(np.exp(1j * (arrival - arrival[0]))), 0.0, atol=1e-9)
    # at the geometric focus every ring is equidistant: no steering
    at_focus = steering_phases(t.roc_mm, t.aperture_mm, t.rings_mm, t.exit_plane_to_focus_mm,
                               t.exit_plane_to_focus_mm, 500e3)
    assert np.allclose(np.angle(np.exp(1j * at_focus)), 0.0, atol=1e-9)


def test_an_array_is_two_source_terms_whatever_its_rings():
    from tfus.sim.source import BowlSource, bowl_grid_weights, ring_grid_weights, source_terms

    shape, pml, dx = (40, 36, 36), 8, 1.5e-3
    rings = ((0.0, 14e-3), (14.5e-3, 20e-3), (20.5e-3, 26e-3))
    drive = (1.0 + 0j, np.exp(1j * 0.7), 0.5 * np.exp(1j * 2.0))
    bowl = BowlSource((2.0, 18.0, 18.0), (22.0, 18.0, 18.0), 30e-3, 26e-3, rings, drive)
    terms = source_terms(bowl, shape, pml, dx, 50, 1e-7, 200e3, 60e3, 2.0)
    assert len(terms) == 2
    ring_w = [ring_grid_weights(bowl, r, shape, pml, dx) for r in range(3)]
    np.testing.assert_allclose(terms[0][0], sum(c.real * w for c, w in zip(drive, ring_w)))
    np.testing.assert_allclose(terms[1][0], sum(c.imag * w for c, w in zip(drive, ring_w)))
    # the rings tile the bowl: their weights add up to the bowl's (up to the kerfs' missing area)
    whole = bowl_grid_weights(BowlSource((2.0, 18.0, 18.0), (22.0, 18.0, 18.0), 30e-3, 26e-3), shape, pml, dx)
    def cap(d):  # spherical cap area ∝ 1 − cos θ, sin θ = d / 2R
        return 1 - math.cos(math.asin(d / 60e-3))
    area_ratio = sum(cap(b) - cap(a) for a, b in rings) / cap(26e-3)
    assert area_ratio < 0.96  # the kerfs
    assert abs(sum(w.sum() for w in ring_w) / whole.sum() - area_ratio) < 0.01
    # in phase, one term
    flat = BowlSource((2.0, 18.0, 18.0), (22.0, 18.0, 18.0), 30e-3, 26e-3, rings, (1.0 + 0j,) * 3)
    assert len(source_terms(flat, shape, pml, dx, 50, 1e-7, 200e3, 60e3, 2.0)) == 1


def test_steered_array_engine_matches_kwave_step_for_step():
    """Both engines with the two-term source of a steered array, 150 steps, water + bone slab."""
    from tfus.sim.solver import MediumArrays, _build_stepper, absorbing_dt_limit, make_time_axis, padded_layout
    from tfus.sim.source import BowlSource, source_terms

    config = get_preset("test")
    box, dx, f = (32, 32, 32), 1.5e-3, 200e3
    c = np.full(box, 1500.0, np.float32)
    rho = np.full(box, 1000.0, np.float32)
    alpha = np.zeros(box, np.float32)
    c[12:15], rho[12:15], alpha[12:15] = 2800.0, 1900.0, 20.0
    medium = MediumArrays(c, rho, alpha, 2.0)
    taxis = make_time_axis(box, dx, 1500.0, 2800.0, f, config, dt_limit=absorbing_dt_limit(medium, dx))
    padded, _ = padded_layout(box, config.pml_size)
    rings = ((0.0, 14e-3), (14.5e-3, 20e-3), (20.5e-3, 26e-3))
    bowl = BowlSource((2.0, 16.0, 16.0), (22.0, 16.0, 16.0), 30e-3, 26e-3, rings,
                      tuple(np.exp(1j * np.array([0.0, 0.9, 2.1]))))
    terms = source_terms(bowl, padded, config.pml_size, dx, taxis.n_steps, taxis.dt, f, 60e3, config.ramp_cycles)
    args = (medium, taxis, dx, config, "cpu", [w for w, _ in terms], [s for _, s in terms], None)
    (ref, n_ref, _), (eng, n_eng, _) = _build_stepper("kwave", *args), _build_stepper("tfus", *args)
    assert n_ref == n_eng > 0
    for _ in range(150):
        ref.step()
        eng.step()
    p_ref = np.asarray(ref.p)
    peak = float(np.abs(p_ref).max())
    assert peak > 1e4
    assert float(np.abs(p_ref - eng.p).max()) / peak < 1e-4


def test_annular_array_in_water_matches_oneil_annuli():
    """All rings in phase, and the outer ring alone, against O'Neil's annulus solution (issue 15's bar)."""
    from tfus.sim.annular_validation import CASES, compare_drive
    from tfus.sim.transducers import exit_plane_depth_mm

    case = CASES["small"]
    t = case.spec()
    z_from = exit_plane_depth_mm(t.roc_mm, t.aperture_mm, None) * 1e-3 + 1500.0 / case.frequency_hz / 2
    for drive in ((1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 1.0)):
        row = compare_drive(case, drive, "check", z_from)
        assert abs(row["peak_rel_error"]) <= 0.02, row
        assert abs(row["peak_shift_mm"]) <= case.spacing_m * 1e3 + 1e-9, row


def test_simulate_cli_takes_a_named_transducer_and_a_focal_distance():
    import argparse

    from tfus.flows.cli.sim_cmds import build_config

    args = argparse.Namespace(preset="demo", frequency_hz=None, roc_mm=None, aperture_mm=None, amplitude_pa=None,
                              spacing_mm=None, ppw=None, crop_mm=None, engine=None, transducer="ctx250",
                              focal_distance_mm=40.0)
    tr = build_config(args).transducer
    assert tr.name == "ctx250" and tr.frequency_hz == 250e3 and tr.focal_distance_mm == 40.0
    assert len(tr.ring_phases()) == 4
    assert load_sim_config("demo").transducer.name == "bowl"


def test_config_files_name_a_library_transducer(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("base: demo\ntransducer: {library: ctx500, focal_distance_mm: 45}\nspacing_mm: 1.0\n")
    config = load_sim_config(str(path))
    assert config.transducer.name == "ctx500" and config.transducer.focal_distance_mm == 45.0
    assert config.spacing_mm == 1.0 and config.window_shape == get_preset("demo").window_shape
    (tmp_path / "plain.yaml").write_text("base: demo\ntransducer: ctx250\n")
    assert load_sim_config(str(tmp_path / "plain.yaml")).transducer.rings_mm == LIBRARY["ctx250"].rings_mm


def test_peak_steering_puts_the_simulated_focus_on_the_request():
    """CTX-250 (full size, 250 kHz, 6 PPW) steered to the middle of its range: the simulated focal lobe within
    1.5 mm of the requested distance from the exit plane; the geometric delay law alone falls short."""
    from tfus.sim.annular_validation import CASES, steering_sweep
    from tfus.sim.transducers import peak_steering_phases

    case = CASES["ctx250"]
    row = steering_sweep(case, [42.5], "peak")[0]
    assert abs(row["shift_from_request_mm"]) <= 1.5, row
    assert abs(row["achieved_mm"] - row["analytic_mm"]) <= case.spacing_m * 1e3, row
    assert abs(row["peak_rel_error"]) <= 0.02, row
    t = case.spec()
    _, set_mm = peak_steering_phases(t.roc_mm, t.aperture_mm, t.rings_mm, t.exit_plane_to_focus_mm, 42.5, 250e3)
    assert set_mm > 44.0  # the geometric set point has to lie beyond the requested focus (focal shift)
    with pytest.raises(ValueError, match="steering"):
        dataclasses.replace(TransducerConfig.from_library("ctx250"), steering="best")


def test_stored_points_lie_on_the_rings_and_carry_their_drive():
    """``sim.window.transducer_encoding``: points on the rings only (none in the kerfs), shared by area, each
    with its ring's index, amplitude and phase; a single bowl keeps its points and is ring 0 in phase."""
    from tfus.sim.transducer import Bowl
    from tfus.sim.window import transducer_encoding

    tr = TransducerConfig.from_library("ctx500", focal_distance_mm=50.0)
    bowl = Bowl((0.0, 0.0, 0.0), (0.0, 0.0, 100.0), tr.roc_mm, tr.aperture_mm)
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    points, drive = transducer_encoding(bowl, tr, 1000, affine)
    ring = drive[:, 0].astype(int)
    radius_mm = np.hypot(points[:, 0], points[:, 1]) * 0.5  # distance from the axis (the z axis here)
    for j, (inner, outer) in enumerate(tr.rings_mm):
        r = radius_mm[ring == j]
        assert r.min() >= inner / 2 - 1e-3 and r.max() <= outer / 2 + 1e-3
        cap = lambda d: tr.roc_mm - math.sqrt(tr.roc_mm ** 2 - (d / 2) ** 2)  # noqa: E731 (zone area ∝ height)
        share = (cap(outer) - cap(inner)) / sum(cap(b) - cap(a) for a, b in tr.rings_mm)
        assert abs(len(r) - 1000 * share) <= 1.0
    np.testing.assert_allclose(drive[:, 2], np.asarray(tr.ring_phases(), np.float32)[ring])
    assert np.all(drive[:, 1] == 1.0) and len(set(np.round(tr.ring_phases(), 4))) == 4
    single = get_preset("demo").transducer
    bowl = Bowl((0.0, 0.0, 0.0), (0.0, 0.0, 100.0), single.roc_mm, single.aperture_mm)
    points, drive = transducer_encoding(bowl, single, 64, affine)
    np.testing.assert_array_equal(points, (bowl.surface_points_mm(64) * 2.0).astype(np.float32))
    np.testing.assert_array_equal(drive, np.tile(np.float32([0, 1, 0]), (64, 1)))
