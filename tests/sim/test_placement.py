"""Placement planner: scalp detection, normals, stand-off, validity of every window, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.config import get_preset
from tfus.sim.ingest import Volume, axis_aligned_affine
from tfus.sim.phantom import make_phantom
from tfus.sim.placement import Placement, find_scalp, plan_placements
from tfus.sim.transducer import Bowl
from tfus.sim.window import make_window

CONFIG = get_preset("test")


def _sphere_head(background: float, radius=45.0, spacing=1.5, centre=(3.0, -2.0, 1.0)) -> Volume:
    """A spherical head (soft tissue, a 6 mm skull, brain) in air or water; scalp radius ``radius``."""
    n = int(2 * (radius + 22) / spacing)
    affine = axis_aligned_affine(-(n - 1) / 2 * spacing + np.asarray(centre), spacing)
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1)
    r = np.linalg.norm(idx * spacing + affine[:3, 3] - centre, axis=-1)
    hu = np.full(r.shape, background, np.float32)
    hu[r < radius] = 45.0
    hu[r < radius - 4] = 1700.0
    hu[r < radius - 10] = 30.0
    return Volume(hu, affine)


@pytest.fixture(scope="module")
def head():
    return make_phantom(11, spacing_mm=1.5, scale=0.5)


def test_deterministic_from_seed(head):
    a = plan_placements(head, 5, seed=3, config=CONFIG)
    b = plan_placements(head, 5, seed=3, config=CONFIG)
    c = plan_placements(head, 5, seed=4, config=CONFIG)
    assert a == b and len(a) == 5
    assert a != c


def test_every_placement_is_valid(head):
    placements = plan_placements(head, 6, seed=1, config=CONFIG)
    scalp_z = []
    for p in placements:
        w = make_window(head, p.position_mm, p.target_mm, CONFIG)  # must not raise
        bowl = w.bowl
        # Water under the whole bowl, brain at the target.
        surf = np.rint(head.world_to_voxel(bowl.surface_points_mm(200))).astype(int)
        assert np.all(head.hu[tuple(surf.T)] < 15)
        tgt = np.rint(head.world_to_voxel(p.target_mm)).astype(int)
        assert abs(head.hu[tuple(tgt)] - 30) < 45
        # Stand-off: apex at standoff + bowl depth from the scalp point, along the axis.
        gap = np.linalg.norm(np.subtract(p.position_mm, p.scalp_mm))
        assert gap == pytest.approx(CONFIG.standoff_mm + bowl.depth_mm, abs=1e-3)
        np.testing.assert_allclose(np.subtract(p.scalp_mm, p.position_mm) / gap, bowl.axis, atol=1e-3)
        scalp_z.append(p.scalp_mm[2])
    assert min(scalp_z) > 0  # the upper part of the head (centred at the origin)
    scalp = np.array([p.scalp_mm for p in placements])
    dists = np.linalg.norm(scalp[:, None] - scalp[None], axis=-1)[np.triu_indices(len(scalp), 1)]
    assert dists.min() > 15  # spread over the head, not clustered


@pytest.mark.parametrize("background", [-1000.0, 0.0])
def test_scalp_and_normals_on_a_sphere(background):
    vol = _sphere_head(background)
    scalp = find_scalp(vol)
    centre = np.array([3.0, -2.0, 1.0])
    radial = scalp.points_mm - centre
    r = np.linalg.norm(radial, axis=1)
    assert np.all(np.abs(r - 45.0) < 1.6)  # on the scalp to within about one planning voxel
    cosang = np.sum(scalp.normals * radial / r[:, None], axis=1)
    assert np.median(cosang) > 0.995 and cosang.min() > 0.95  # outward and radial
    placements = plan_placements(vol, 3, seed=0, config=CONFIG)
    for p in placements:  # axis through the centre: the focus lies on the radius below the scalp point
        axis = np.subtract(p.target_mm, p.position_mm)
        to_centre = centre - np.asarray(p.position_mm)
        cos = axis @ to_centre / np.linalg.norm(axis) / np.linalg.norm(to_centre)
        assert cos > 0.99


def test_explicit_targets(head):
    targets = [(0.0, 0.0, 5.0), (-5.0, 5.0, 0.0)]
    placements = plan_placements(head, 3, seed=2, config=CONFIG, targets_mm=targets)
    assert [p.target_mm for p in placements] == [targets[0], targets[1], targets[0]]
    for p in placements:
        make_window(head, p.position_mm, p.target_mm, CONFIG)


def test_too_many_or_impossible(head):
    with pytest.raises(ValueError, match="placements fit"):
        plan_placements(head, 3, seed=0, config=CONFIG.replace(window_shape=(12, 12, 12)))
    with pytest.raises(ValueError, match="`n`"):
        plan_placements(head, 0, seed=0, config=CONFIG)
    with pytest.raises(ValueError, match="`seed`"):
        plan_placements(head, 1, seed=-2, config=CONFIG)


def test_empty_ct_has_no_head():
    vol = Volume(np.zeros((20, 20, 20), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="no head"):
        plan_placements(vol, 1, seed=0, config=CONFIG)


def test_placement_validation_and_dict():
    p = Placement((1, 2, 3), (4, 5, 6))
    assert p.to_dict() == {"position_mm": [1.0, 2.0, 3.0], "target_mm": [4.0, 5.0, 6.0], "scalp_mm": None}
    with pytest.raises(ValueError, match="must differ"):
        Placement((1, 2, 3), (1, 2, 3))
    with pytest.raises(ValueError, match="position_mm"):
        Placement((1, 2), (1, 2, 3))
    assert isinstance(Bowl((0, 0, 0), (0, 0, 1), 10, 10).axis, np.ndarray)


def test_oblique_ct_affine_gives_world_normals():
    """The planner works in world mm: a rotated voxel grid gives the same radial normals."""
    base = _sphere_head(-1000.0, spacing=2.0)
    theta = 0.4
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = base.affine.copy()
    affine[:3, :3] = rot @ base.affine[:3, :3]
    centre_vox = base.world_to_voxel([3.0, -2.0, 1.0])
    affine[:3, 3] = np.array([3.0, -2.0, 1.0]) - affine[:3, :3] @ centre_vox  # same head centre in world
    scalp = find_scalp(Volume(base.hu, affine))
    radial = scalp.points_mm - [3.0, -2.0, 1.0]
    r = np.linalg.norm(radial, axis=1)
    assert np.all(np.abs(r - 45.0) < 2.1)
    assert np.median(np.sum(scalp.normals * radial / r[:, None], axis=1)) > 0.99


def test_annular_array_sits_on_its_exit_plane_and_steers_to_the_target():
    from tfus.sim.config import TransducerConfig
    from tfus.sim.transducers import exit_plane_depth_mm

    config = CONFIG.replace(transducer=TransducerConfig.from_library("ctx250"), window_shape=(64, 64, 64))
    tr = config.transducer
    vol = _sphere_head(-1000.0, radius=60.0)
    centre = np.array([3.0, -2.0, 1.0])
    target = tuple(centre + (0.0, 0.0, 15.0))
    exit_depth = exit_plane_depth_mm(tr.roc_mm, tr.aperture_mm, tr.exit_plane_to_focus_mm)
    placements = plan_placements(vol, 2, seed=0, config=config, targets_mm=[target])
    for p in placements:
        axis = np.subtract(p.target_mm, p.position_mm)
        axis /= np.linalg.norm(axis)
        exit_centre = np.asarray(p.position_mm) + exit_depth * axis
        # the exit plane sits the stand-off outside the scalp; the steering distance reaches the target
        assert np.linalg.norm(exit_centre - np.asarray(p.scalp_mm)) == pytest.approx(config.standoff_mm, abs=0.2)
        assert p.focal_distance_mm == pytest.approx(np.linalg.norm(np.subtract(p.target_mm, exit_centre)), abs=1e-3)
        assert 25.0 <= p.focal_distance_mm <= 60.0 and p.to_dict()["focal_distance_mm"] == p.focal_distance_mm
    with pytest.raises(ValueError, match="steering range"):  # deeper than any CTX-250 setting reaches
        plan_placements(vol, 1, seed=0, config=config, targets_mm=[tuple(centre - (0.0, 0.0, 40.0))])


def test_plan_cli_puts_an_array_on_the_scalp_aimed_at_a_target(tmp_path, capsys):
    import argparse
    import json

    from tfus.flows.cli.phantom_cmd import register_phantom
    from tfus.sim.ingest import save_nifti

    vol = _sphere_head(-1000.0, radius=60.0)
    ct = save_nifti(vol.hu, vol.affine, tmp_path / "sphere.nii.gz")
    cfg = tmp_path / "wide.yaml"
    cfg.write_text("base: test\nwindow_shape: [64, 64, 64]\n")
    parser = argparse.ArgumentParser()
    register_phantom(parser.add_subparsers())
    args = parser.parse_args(["plan", "--ct", str(ct), "--n", "1", "--preset", str(cfg), "--transducer", "ctx250",
                              "--target", "3", "-2", "16"])
    assert args.handler(args) == 0
    plan = json.loads(capsys.readouterr().out)[0]
    assert plan["target_mm"] == [3.0, -2.0, 16.0] and 25.0 <= plan["focal_distance_mm"] <= 60.0


SUBJECT = CONFIG.replace(window_shape=(32, 32, 32), n_transducer_points=128, grid="subject")


@pytest.fixture(scope="module")
def small_head():
    return make_phantom(0, spacing_mm=1.5, scale=0.5)


def test_candidates_aim_at_the_target_within_reach_and_tilt(small_head):
    from tfus.sim.placement import candidate_placements, reach_mm
    from tfus.sim.subject_grid import box_contains, subject_grid

    target = plan_placements(small_head, 1, 0, SUBJECT)[0].target_mm
    cands = candidate_placements(small_head, target, 6, SUBJECT, max_tilt_deg=20)
    near, far = reach_mm(SUBJECT)
    grid = subject_grid(small_head, SUBJECT)
    assert len(cands) == 6 and len({c.position_mm for c in cands}) == 6
    for c in cands:
        assert c.target_mm == target
        d = np.linalg.norm(np.subtract(c.position_mm, target))
        assert near <= d <= far
        axis = np.subtract(target, c.position_mm)
        inward = np.subtract(c.scalp_mm, c.position_mm)
        tilt = np.degrees(np.arccos(axis @ inward / np.linalg.norm(axis) / np.linalg.norm(inward)))
        assert tilt <= 20.0 + 1e-6
        assert box_contains(*grid, np.asarray([c.position_mm]), 0)[0]
        make_window(small_head, c.position_mm, c.target_mm, SUBJECT)  # a valid simulation window
    assert candidate_placements(small_head, target, 6, SUBJECT) == cands  # deterministic


def test_candidate_targets_that_cannot_be_planned(small_head):
    from tfus.sim.placement import candidate_placements

    with pytest.raises(ValueError, match="outside the head"):
        candidate_placements(small_head, (0.0, 0.0, 48.0), 4, SUBJECT)
    column = np.array([[0.0, 0.0, z] for z in np.arange(45.0, 0.0, -0.5)])  # down from above the vertex
    hu = small_head.hu[tuple(np.rint(small_head.world_to_voxel(column)).astype(int).T)]
    bone = column[np.flatnonzero(hu > 800)[0]]  # the first bone under the vertex's scalp
    with pytest.raises(ValueError, match="in bone"):
        candidate_placements(small_head, tuple(bone), 4, SUBJECT)
    with pytest.raises(ValueError, match="no candidate placement reaches"):  # deep: beyond the bowl's reach
        candidate_placements(small_head, (0.0, 0.0, -20.0), 4, CONFIG)


def test_focal_zone_holds_the_on_axis_maximum():
    from tfus.sim.oneil import focal_zone_m, oneil_on_axis

    near, far = focal_zone_m(0.064, 0.064, 5e5)  # ITRUSST BM1-like strongly focused bowl: around R
    z = np.linspace(near, far, 200)
    p = oneil_on_axis(z, 0.064, 0.064, 5e5, 1.0)
    assert near < 0.064 < far and p.min() >= 0.5 * p.max() - 1e-9
    assert oneil_on_axis(far * 1.01, 0.064, 0.064, 5e5, 1.0) < 0.5 * p.max()


def test_tilted_training_placements_stay_within_the_cone(small_head):
    tilted = SUBJECT.replace(aim_tilt_deg=20.0)
    assert tilted.key() != SUBJECT.key() and SUBJECT.replace(aim_tilt_deg=0.0).key() == SUBJECT.key()
    placements = plan_placements(small_head, 2, 0, tilted)
    assert placements == plan_placements(small_head, 2, 0, tilted)  # deterministic from the seed
    tilts = []
    for p in placements:
        axis = np.subtract(p.target_mm, p.position_mm)
        inward = np.subtract(p.scalp_mm, p.position_mm)
        tilts.append(np.degrees(np.arccos(axis @ inward / np.linalg.norm(axis) / np.linalg.norm(inward))))
        assert np.linalg.norm(axis) == pytest.approx(SUBJECT.transducer.roc_mm, abs=1e-3)  # focus at roc
        make_window(small_head, p.position_mm, p.target_mm, tilted)
    assert max(tilts) <= 20.0 + 1e-6 and max(tilts) > 1.0
    with pytest.raises(ValueError, match="aim_tilt_deg"):
        SUBJECT.replace(aim_tilt_deg=60.0)
