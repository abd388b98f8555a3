"""The free-field prior (sim.beam_prior): Rayleigh table vs O'Neil on axis and vs the solver in water; pose
recovery from the stored transducer points."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim import beam_prior as bp
from tfus.sim.config import TransducerConfig, get_preset
from tfus.sim.ingest import axis_aligned_affine
from tfus.sim.oneil import oneil_on_axis
from tfus.sim.transducer import Bowl
from tfus.sim.window import transducer_encoding


@pytest.mark.parametrize("preset", ["test", "demo"])
def test_table_on_axis_is_oneil(preset):
    tr = get_preset(preset).transducer
    tpl = bp.rayleigh_template(tr, reach_mm=80.0, step_mm=0.75)
    z = tpl.z0_mm + np.arange(tpl.table.shape[0]) * tpl.step_mm
    keep = (z > 5.0) & (z < 75.0)
    ref = oneil_on_axis(z[keep] * 1e-3, tr.roc_mm * 1e-3, tr.aperture_mm * 1e-3, tr.frequency_hz, tr.amplitude_pa)
    err = np.abs(tpl.table[keep, 0] - ref) / ref.max()
    assert err.max() < 0.01, err.max()


def test_pose_from_points_recovers_the_bowl():
    tr = get_preset("test").transducer
    affine = axis_aligned_affine(np.array([-3.0, 2.0, 1.0]), 1.5)
    bowl = Bowl.from_config((10.0, 30.0, 20.0), (40.0, 35.0, 12.0), tr)
    points, _ = transducer_encoding(bowl, tr, 256, affine)
    apex, axis = bp.pose_from_points(points, tr.roc_mm / 1.5)
    true_apex = (np.asarray(bowl.apex_mm) - affine[:3, 3]) / 1.5
    assert np.abs(apex - true_apex).max() < 0.05
    assert np.degrees(np.arccos(min(1.0, float(axis @ bowl.axis)))) < 0.5


def test_pose_from_points_bad_input():
    with pytest.raises(ValueError, match="P >= 4"):
        bp.pose_from_points(np.zeros((3, 3)), 20.0)


def test_annular_array_in_phase_is_the_bowl():
    """Rings that tile the whole cap, driven in phase, radiate like the single bowl."""
    bowl = TransducerConfig(frequency_hz=500e3, roc_mm=40.0, aperture_mm=40.0)
    rings = bowl.__class__(frequency_hz=500e3, roc_mm=40.0, aperture_mm=40.0,
                           rings_mm=((0.0, 20.0), (20.0, 30.0), (30.0, 40.0)))
    a = bp.rayleigh_template(bowl, 60.0, 1.0, n_points=6000).table
    b = bp.rayleigh_template(rings, 60.0, 1.0, n_points=6000).table
    assert np.abs(a - b).max() / a.max() < 0.02


def test_placed_prior_matches_the_solver_in_water():
    """The Rayleigh beam placed at a tilted pose vs tfus' own free-field simulation on the same window."""
    from tfus.models.data import normalise_pressure
    from tfus.sim import simulate_free_field

    cfg = get_preset("test")
    shape, s = cfg.window_shape, cfg.spacing_mm
    affine = axis_aligned_affine(np.zeros(3), s)
    pos, tgt = np.array([8.0, 20.0, 16.0]) * s, np.array([30.0, 24.0, 12.0]) * s
    sim = np.abs(simulate_free_field(pos, tgt, cfg, affine, shape, progress=False).pressure_pa)
    points, _ = transducer_encoding(Bowl.from_config(pos, tgt, cfg.transducer), cfg.transducer, 256, affine)
    prior = bp.free_field_prior(bp.template_for(cfg.transducer, shape, s), points, shape, s)
    a, b = normalise_pressure(prior), normalise_pressure(sim)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.05
    assert abs(prior.max() / sim.max() - 1) < 0.03
    assert np.abs(np.subtract(np.unravel_index(prior.argmax(), shape), np.unravel_index(sim.argmax(), shape))).max() <= 1


@pytest.mark.parametrize("preset", ["test", "demo", "practice"])
def test_reach_covers_every_voxel_of_a_beam_window(preset):
    """A beam-centred window (sim.window.plan_window) lies inside the table's reach from the apex."""
    from tfus.sim.ingest import Volume
    from tfus.sim.window import plan_window

    cfg = get_preset(preset)
    vol = Volume(np.zeros((200, 200, 200), np.float32), axis_aligned_affine(np.full(3, -150.0), 1.5))
    affine, shape, bowl = plan_window(vol, (3.3, -7.1, 40.2), (10.0, 5.0, -2.0), cfg)
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    corners_mm = corners @ affine[:3, :3].T + affine[:3, 3]
    far = np.linalg.norm(corners_mm - np.asarray(bowl.apex_mm), axis=1).max()
    assert far <= bp.window_reach_mm(shape, cfg.spacing_mm, cfg.transducer.roc_mm, "beam")
