"""Synthetic heads: size, layers, HU ranges, varying skull thickness, determinism, NIfTI output."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.ingest import load_volume
from tfus.sim.phantom import make_phantom, write_phantom


@pytest.fixture(scope="module")
def adult():
    return make_phantom(7, spacing_mm=2.0)


def _profile(vol, direction):
    """HU along a ray from the head centre (world origin) in 0.25 mm steps, nearest voxel."""
    t = np.arange(0, 130, 0.25)
    pts = np.outer(t, np.asarray(direction) / np.linalg.norm(direction))
    v = np.rint(vol.world_to_voxel(pts)).astype(int)
    ok = np.all((v >= 0) & (v < np.asarray(vol.shape)), axis=1)
    return t[ok], vol.hu[tuple(v[ok].T)]


def test_adult_size_and_centre(adult):
    head = adult.hu > 20
    idx = np.argwhere(head)
    size = (idx.max(0) - idx.min(0) + 1) * 2.0
    assert np.all(np.abs(size - [150, 180, 160]) < 15)
    centre = adult.voxel_to_world(idx.mean(0))
    assert np.all(np.abs(centre) < 4)
    assert np.all(adult.hu[0] == 0) and np.all(adult.hu[:, :, -1] == 0)  # water background


def test_layers_and_hu_ranges():
    vol = make_phantom(3, spacing_mm=0.5, scale=0.4, margin_mm=4.0)  # fine voxels resolve the tables; small head is fast
    for direction in [(0, 0, 1), (1, 0, 0), (0, -1, 0.5)]:
        t, hu = _profile(vol, direction)
        bone = hu > 300
        first, last = np.flatnonzero(bone)[[0, -1]]
        inner = hu[first:last + 1]
        assert 1550 < inner.max() < 2000                       # cortical tables
        assert np.any((inner > 550) & (inner < 1050))         # trabecular diploë between them
        assert 4 < (t[last] - t[first]) < 14                   # skull thickness in mm
        brain = hu[: max(first - 20, 1)]
        assert np.all(np.abs(brain - 30) < 50)
        skin = hu[last + 2: last + 12]
        assert np.all((skin > 0) & (skin < 120))


def test_skull_thickness_varies(adult):
    thick = []
    for k in range(12):
        ang = 2 * np.pi * k / 12
        t, hu = _profile(adult, (np.cos(ang), np.sin(ang), 0.6))
        thick.append(np.count_nonzero(hu > 300) * 0.25)
    assert max(thick) - min(thick) > 1.5


def test_deterministic_and_seeded():
    a, b, c = make_phantom(5, 2.0, 0.5), make_phantom(5, 2.0, 0.5), make_phantom(6, 2.0, 0.5)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.shape != c.shape or not np.array_equal(a.hu, c.hu)


def test_write_phantom_round_trip(tmp_path):
    path = write_phantom(2, tmp_path / "head.nii.gz", spacing_mm=2.0, scale=0.5)
    back = load_volume(path)
    ref = make_phantom(2, spacing_mm=2.0, scale=0.5)
    np.testing.assert_array_equal(back.hu, ref.hu)
    np.testing.assert_allclose(back.affine, ref.affine)
    np.testing.assert_allclose(back.corners_mm().mean(0), 0, atol=1e-6)  # centred at the origin


@pytest.mark.parametrize("kw,match", [(dict(seed=-1), "seed"), (dict(seed=1, spacing_mm=0.0), "spacing_mm"),
                                      (dict(seed=1, scale=10.0), "scale")])
def test_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        make_phantom(**kw)


def test_cli_phantom_and_plan(tmp_path, capsys):
    """`tfus phantom` / `tfus plan` through their parser (registered by the sim command group)."""
    import argparse
    import json

    from tfus.flows.cli.phantom_cmd import register_phantom

    parser = argparse.ArgumentParser()
    register_phantom(parser.add_subparsers())
    out = tmp_path / "h.nii.gz"
    args = parser.parse_args(["phantom", "--seed", "4", "--out", str(out), "--spacing-mm", "2", "--scale", "0.5"])
    assert args.handler(args) == 0
    np.testing.assert_array_equal(load_volume(out).hu, make_phantom(4, spacing_mm=2.0, scale=0.5).hu)
    capsys.readouterr()
    args = parser.parse_args(["plan", "--ct", str(out), "--n", "2", "--seed", "1", "--preset", "test"])
    assert args.handler(args) == 0
    plans = json.loads(capsys.readouterr().out)
    assert len(plans) == 2 and set(plans[0]) >= {"position_mm", "target_mm"}
    args = parser.parse_args(["phantom", "--seed", "4", "--out", str(tmp_path / "h.png")])
    with pytest.raises(ValueError, match="must end in .nii"):
        args.handler(args)
