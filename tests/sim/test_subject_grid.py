"""The skull-fixed ("subject") grid: one window per subject, placements moving inside it."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.config import SimConfig, get_preset
from tfus.sim.coupling import find_head
from tfus.sim.ingest import voxel_to_world
from tfus.sim.phantom import make_phantom
from tfus.sim.placement import plan_placements
from tfus.sim.subject_grid import box_contains, subject_grid
from tfus.sim.window import MARGIN_VOX, make_window, plan_window

CONFIG = get_preset("subject")  # 48³ at 1.5 mm = 72 mm box, R 30 / D 26 mm bowl


@pytest.fixture(scope="module")
def head():
    return make_phantom(5, spacing_mm=1.5)


@pytest.fixture(scope="module")
def placements(head):
    return plan_placements(head, 6, seed=2, config=CONFIG)


def test_grid_sits_on_the_head_top_with_room_for_the_bowl(head):
    affine, shape = subject_grid(head, CONFIG)
    assert shape == (48, 48, 48) and np.allclose(np.diag(affine)[:3], 1.5)
    assert np.allclose(affine[:3, 3] / 1.5, np.round(affine[:3, 3] / 1.5))  # on the spacing lattice
    assert (affine, shape)[1] == subject_grid(head, CONFIG)[1] and np.array_equal(affine, subject_grid(head, CONFIG)[0])
    mask = find_head(head)
    pts = voxel_to_world(mask.affine, np.argwhere(mask.mask))
    top = affine[2, 3] + (shape[2] - 1) * 1.5
    assert top - pts[:, 2].max() >= CONFIG.standoff_mm + 2.9  # stand-off + the bowl's 2.96 mm rim depth above the vertex
    centre = affine[:3, 3] + (np.asarray(shape) - 1) / 2 * 1.5
    assert np.allclose(centre[:2], pts[:, :2].mean(axis=0), atol=1.5)  # laterally on the head


def test_a_box_larger_than_the_head_is_centred_on_it():
    small = make_phantom(1, spacing_mm=3.0, scale=0.35)
    big = CONFIG.replace(spacing_mm=3.0, window_shape=(60, 60, 60))  # 177 mm: holds the whole head
    affine, shape = subject_grid(small, big)
    mask = find_head(small)
    centroid = voxel_to_world(mask.affine, np.argwhere(mask.mask)).mean(axis=0)
    assert np.allclose(affine[:3, 3] + 59 / 2 * 3.0, centroid, atol=1.6)


def test_every_placement_shares_the_grid_and_the_transducer_moves(head, placements):
    affine, shape = subject_grid(head, CONFIG)
    windows = [make_window(head, p.position_mm, p.target_mm, CONFIG) for p in placements[:3]]
    for w in windows:
        assert w.shape == shape and np.array_equal(w.affine, affine)
    assert np.array_equal(windows[0].ct_hu, windows[1].ct_hu)  # the same crop of the head
    apexes = np.array([p.position_mm for p in placements])
    spread = np.linalg.norm(apexes[:, None] - apexes[None], axis=-1).max()
    assert spread > 20.0  # the bowl moves over the scalp by centimetres inside the fixed window
    centres = [w.transducer_points_vox.mean(axis=0) for w in windows]
    assert np.linalg.norm(centres[0] - centres[1]) > 5.0  # ... and so do its points in voxel coordinates
    for p in placements:  # bowl and focus inside the box, as planned
        assert box_contains(affine, shape, p.target_mm, MARGIN_VOX)[0]


def test_plan_window_refuses_a_focus_outside_the_subject_window(head):
    affine, shape = subject_grid(head, CONFIG)
    top = affine[:3, 3] + (np.asarray(shape) - 1) * 1.5
    apex = np.array([0.0, 0.0, top[2] - 6.0])
    far = apex - np.array([0.0, 0.0, 200.0])  # aims 200 mm down: the focus falls below the box
    with pytest.raises(ValueError, match="outside the subject window"):
        plan_window(head, apex, far, CONFIG.replace(transducer=CONFIG.transducer.__class__(
            frequency_hz=200e3, roc_mm=200.0, aperture_mm=26.0)))


def test_grid_config_validation_and_stable_keys():
    with pytest.raises(ValueError, match="`grid` must be 'beam'"):
        SimConfig(grid="head")
    with pytest.raises(ValueError, match="needs `window_shape`"):
        SimConfig(grid="subject", window_shape=None)
    small = get_preset("small")
    assert small.key() == small.replace(grid="beam").key()  # beam keys as before the field existed
    assert small.key() != small.replace(grid="subject").key()
    assert SimConfig.from_dict(CONFIG.to_dict()) == CONFIG
