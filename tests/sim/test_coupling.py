"""Scanner CTs: the head is found apart from table and holder; outside it is coupling water; air inside the
head refuses a window; placements sit over the cranial vault with air-free beams (named scenarios)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tfus.sim import Bowl, get_preset, make_window, plan_placements
from tfus.sim.coupling import find_head
from tfus.sim.ingest import Volume, axis_aligned_affine
from tfus.sim.scanner_phantom import make_scanner_head

CONFIG = get_preset("test")


@pytest.fixture(scope="module")
def scanner():
    return make_scanner_head(3, spacing_mm=2.0, scale=0.6)


def _labels_at(head, points_mm):
    v = np.rint(head.volume.world_to_voxel(points_mm)).astype(int)
    v = np.clip(v, 0, np.asarray(head.volume.shape) - 1)
    return {name: bool(mask[tuple(v.T)].any()) for name, mask in head.labels.items()}


def test_table_and_holder_are_not_head(scanner):
    head = find_head(scanner.volume)
    for name in ("table", "holder"):
        pts = scanner.volume.voxel_to_world(np.argwhere(scanner.labels[name]))
        assert head.contains(pts).mean() < 0.05, name


def test_enclosed_and_open_air_cavities_are_inside_the_head(scanner):
    head = find_head(scanner.volume)
    brain = scanner.volume.voxel_to_world(np.argwhere(scanner.labels["intracranial"]))
    assert head.contains(brain).all()
    for name in ("sinuses", "mastoid", "ear_canals", "nasal"):  # air there is a mirror, not coupling water
        pts = scanner.volume.voxel_to_world(np.argwhere(scanner.labels[name]))
        assert head.contains(pts).mean() > 0.75, name


def test_placements_sit_over_the_vault_and_aim_into_the_brain(scanner):
    placements = plan_placements(scanner.volume, 4, 0, CONFIG)
    for p in placements:
        scalp = np.asarray(p.scalp_mm, float)[None]
        near = scalp + np.random.default_rng(0).normal(scale=2.0, size=(32, 3))
        hit = _labels_at(scanner, near)
        assert not any(hit[name] for name in ("face", "ears", "orbits", "table", "holder")), (p, hit)
        assert _labels_at(scanner, np.asarray(p.target_mm)[None])["intracranial"], p
        window = make_window(scanner.volume, p.position_mm, p.target_mm, CONFIG)  # raises if air lay in it
        assert window.ct_hu.min() >= -400  # a coupled window holds no air (re-read later without a head mask)
        assert "coupling water" in window.coupling


def test_the_summary_says_what_couples_the_transducer(scanner):
    from tfus.sim import simulate

    p = plan_placements(scanner.volume, 1, 2, CONFIG)[0]
    result = simulate(scanner.volume, p.position_mm, p.target_mm, CONFIG, progress=False)
    assert "replaced by coupling water" in result.summary["coupling_medium"]
    assert np.isfinite(result.pressure_pa).all() and result.summary["peak_pressure_pa"] > 1e3


def test_outside_the_head_is_coupling_water_in_the_window(scanner):
    p = plan_placements(scanner.volume, 1, 1, CONFIG)[0]
    window = make_window(scanner.volume, p.position_mm, p.target_mm, CONFIG)
    world = window.voxel_to_world(np.argwhere(np.ones(window.shape, bool)))
    head = find_head(scanner.volume)
    outside = ~head.contains(world).reshape(window.shape)
    assert outside.any() and np.all(window.ct_hu[outside] == 0.0)


def test_a_beam_aimed_through_a_sinus_is_blocked(scanner):
    sinus = scanner.volume.voxel_to_world(np.argwhere(scanner.labels["sinuses"])).mean(axis=0)
    brain = scanner.volume.voxel_to_world(np.argwhere(scanner.labels["intracranial"])).mean(axis=0)
    direction = (sinus - brain) / np.linalg.norm(sinus - brain)
    position = sinus + 25.0 * direction
    target = sinus - 20.0 * direction  # in the brain, behind the sinus
    assert _labels_at(scanner, target[None])["intracranial"]
    with pytest.raises(ValueError, match="mL of air inside the head"):
        make_window(scanner.volume, position, target, CONFIG)


def test_an_air_pocket_in_a_water_background_ct_is_blocked_too():
    n, s = 48, 1.5
    affine = axis_aligned_affine([-(n - 1) / 2 * s] * 3, s)
    g = np.indices((n, n, n)).transpose(1, 2, 3, 0) * s + affine[:3, 3]
    hu = np.zeros((n, n, n), np.float32)
    hu[np.abs(g[..., 2] - 10) < 3] = -1000.0
    with pytest.raises(ValueError, match="air inside the head"):
        make_window(Volume(hu, affine), (0, 0, 30.0), (0, 0, 0.0), CONFIG)


def test_a_field_of_view_cut_skips_beams_that_would_leave_it():
    scanner = make_scanner_head(3, spacing_mm=2.0, scale=0.6, fov_cut_z_mm=8.0)
    target = (0.0, 0.0, 14.0)  # in the brain, 6 mm above the end of the image
    skipped = Counter()
    placements = plan_placements(scanner.volume, 2, 0, CONFIG, targets_mm=[target], skipped=skipped)
    assert skipped["beam leaves the CT's field of view"] > 0, skipped
    lo = scanner.volume.corners_mm().min(axis=0)
    for p in placements:
        bowl = Bowl.from_config(p.position_mm, p.target_mm, CONFIG.transducer)
        assert bowl.rim_points_mm(32)[:, 2].min() > lo[2]
