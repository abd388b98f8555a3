"""Scanner-like heads: air background, face and air cavities, table, holder, metal, FOV cut, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tfus.sim.ingest import load_volume
from tfus.sim.phantom import make_phantom
from tfus.sim.scanner_phantom import LABELS, make_scanner_head, write_scanner_head

AIR_LABELS = ("nasal", "sinuses", "ear_canals", "mastoid")
SIX = ndimage.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def head():
    return make_scanner_head(5, spacing_mm=2.0, scale=0.6)


@pytest.fixture(scope="module")
def coarse():
    return make_scanner_head(11, spacing_mm=3.0, scale=0.5)


def _air_components(h):
    """6-connected components of air (< -500 HU) and the label of the outside air (a corner voxel)."""
    lab, _ = ndimage.label(h.volume.hu < -500)
    outside = lab[0, -1, -1]
    assert outside > 0
    return lab, outside


def _world(h, mask):
    return h.volume.voxel_to_world(np.argwhere(mask))


def test_labels_and_background(head):
    assert set(head.labels) == set(LABELS)
    for name, m in head.labels.items():
        assert m.dtype == bool and m.shape == head.volume.shape, name
    for name in LABELS[:-2]:
        assert head.labels[name].any(), name
    hu, lab = head.volume.hu, head.labels
    outside = ~(lab["body"] | lab["table"] | lab["holder"] | lab["metal"])
    assert np.all(hu[outside] == -1000)
    assert np.all(hu[:, -1, :] == -1000) and np.all(hu[:, :, -1][~lab["table"][:, :, -1]] == -1000)
    assert np.median(hu[lab["body"]]) > 0  # tissue, not air or water


@pytest.mark.parametrize("which", ["head", "coarse"])
def test_air_cavities_enclosed_or_open(which, request):
    h = request.getfixturevalue(which)
    hu, lab = h.volume.hu, h.labels
    comp, outside = _air_components(h)
    for name in AIR_LABELS:
        assert lab[name].any(), name
        assert np.all(hu[lab[name]] < -500), name
    for name in ("sinuses", "mastoid"):  # enclosed: no path through air to the outside
        assert not np.any(comp[lab[name]] == outside), name
    for name in ("nasal", "ear_canals"):  # nostrils and canal openings
        assert np.any(comp[lab[name]] == outside), name
    sides = np.sign(_world(h, lab["ear_canals"])[:, 0])
    assert set(sides) == {-1.0, 1.0}
    x = h.volume.affine[0, 3] + h.volume.affine[0, 0] * np.arange(h.volume.shape[0])
    for side in (x < 0, x > 0):  # each canal reaches the outside
        assert np.any(comp[lab["ear_canals"] & side[:, None, None]] == outside)


def test_frontal_sinus_has_a_bone_shell(head, coarse):
    for h in (head, coarse):
        sx, sy, sz = h.semi_axes_mm
        comp, n = ndimage.label(h.labels["sinuses"])
        centres = ndimage.center_of_mass(np.ones(comp.shape), comp, range(1, n + 1))
        pos = h.volume.voxel_to_world(np.asarray(centres))
        frontal = int(np.argmax(pos[:, 2])) + 1  # the highest sinus, at the midline above the orbits
        assert abs(pos[frontal - 1, 0]) < 3 and pos[frontal - 1, 2] > 0 and pos[frontal - 1, 1] > 0.6 * sy
        f = comp == frontal
        ring = ndimage.binary_dilation(f, SIX) & ~f
        assert np.all(h.volume.hu[ring] > 300)
        for name in ("sinuses", "mastoid"):  # every enclosed pocket's face-neighbours are bone
            m = h.labels[name]
            assert np.all(h.volume.hu[ndimage.binary_dilation(m, SIX) & ~m] > 300), name
        maxillary = pos[pos[:, 2] < -0.3 * sz]
        assert len(maxillary) >= 2 and set(np.sign(maxillary[:, 0])) == {-1.0, 1.0}


def test_face_orbits_ears_positions(head):
    sx, sy, sz = head.semi_axes_mm
    hu, lab = head.volume.hu, head.labels
    orbit_hu = hu[lab["orbits"]]
    assert np.mean((orbit_hu > -120) & (orbit_hu < -50)) > 0.3      # orbital fat
    assert np.any((orbit_hu > 0) & (orbit_hu < 40))                   # eyes
    rim = ndimage.binary_dilation(lab["orbits"], SIX) & ~lab["orbits"]
    assert np.mean(hu[rim] > 300) > 0.3                               # bony rim
    assert np.all(lab["face"][lab["orbits"] | lab["nasal"]])
    for name in ("orbits", "nasal", "sinuses"):
        assert _world(head, lab[name])[:, 1].min() > 0.25 * sy, name
    f = _world(head, lab["face"])
    assert f[:, 1].min() > 0.3 * sy - 1 and f[:, 2].max() < 0.1 * sz + 1
    c = _world(head, lab["ear_canals"])
    assert np.all(np.abs(c[:, 1]) < 0.1 * sy) and np.all(np.abs(c[:, 2] + 0.15 * sz) < 0.1 * sz)
    assert np.all(np.abs(c[:, 0]) > 0.5 * sx) and np.ptp(c[:, 0][c[:, 0] > 0]) > 10
    assert np.all(lab["ears"][lab["ear_canals"]]) and not np.any(lab["ears"] & lab["face"])
    m = _world(head, lab["mastoid"])
    assert np.all(np.abs(m[:, 0]) > 0.4 * sx) and np.mean(m[:, 1]) < np.mean(c[:, 1])  # behind the canals
    assert np.mean(m[:, 2]) < np.mean(c[:, 2])                                          # and below


def test_intracranial_is_brain_and_clear_of_air(head, coarse):
    for h in (head, coarse):
        ic = h.labels["intracranial"]
        for name in AIR_LABELS + ("orbits", "metal"):
            assert not np.any(ic & h.labels[name]), name
        assert np.all(np.abs(h.volume.hu[ic] - 25) < 60)
        ring = ndimage.binary_dilation(ic, SIX) & ~ic
        assert np.all(h.volume.hu[ring] > 300)  # enclosed by bone: inner table, skull-base plate, cavity walls


def test_table_holder_metal(head):
    sx, sy, sz = head.semi_axes_mm
    hu, lab = head.volume.hu, head.labels
    tab, hol, body = lab["table"], lab["holder"], lab["body"]
    assert np.all((hu[tab] > 100) & (hu[tab] < 200))
    assert np.all((hu[hol] > 300) & (hu[hol] < 500))
    ty, hy, by = (_world(head, m)[:, 1] for m in (tab, hol, body))
    assert ty.max() < by.min() and ty.max() < -sy                       # under the occiput
    assert 8 < (ty.max() - ty.min() + 2.0) < 16                           # ~12 mm slab
    assert hy.max() < 0 and hy.min() > ty.max()                           # behind the head, above the table
    assert not np.any(hol & body) and not np.any(hol & tab)
    assert np.any(hol[:, 1:, :] & tab[:, :-1, :])                         # rests on the table
    touch = hol & ndimage.binary_dilation(body, SIX)
    assert 0 < touch.sum() < 0.2 * hol.sum()                              # touches the head at a few pads
    dist = ndimage.distance_transform_edt(~body, sampling=2.0)[hol]
    assert 1.5 <= np.median(dist) <= 12
    assert np.all(hu[lab["metal"]] >= 3000) and np.all(hu[~lab["metal"]] < 3000)
    assert ndimage.label(lab["metal"])[1] >= 2                            # fillings and an electrode


def test_switches_off():
    h = make_scanner_head(5, spacing_mm=3.0, scale=0.5, table=False, holder=False, metal=False)
    assert not (h.labels["table"].any() or h.labels["holder"].any() or h.labels["metal"].any())
    assert h.volume.hu.max() < 3000
    outside = ~h.labels["body"]
    assert np.all(h.volume.hu[outside] == -1000)


def test_vault_matches_make_phantom(head):
    """Above 0.3·sz the cranium is make_phantom's: along +z from the centre a 3-12 mm bone layer."""
    ref = make_phantom(5, spacing_mm=2.0, scale=0.6)
    thick = []
    for vol in (head.volume, ref):
        t = np.arange(0.3 * head.semi_axes_mm[2], 130, 0.25)
        v = np.rint(vol.world_to_voxel(np.outer(t, [0, 0, 1]))).astype(int)
        ok = np.all((v >= 0) & (v < np.asarray(vol.shape)), axis=1)
        hu = vol.hu[tuple(v[ok].T)]
        bone = np.flatnonzero(hu > 300)
        thick.append((bone[-1] - bone[0]) * 0.25)
        assert 1500 < hu[bone].max() < 2000
        assert np.all(hu[bone[-1] + 40:] < (-900 if vol is head.volume else 10))  # air (or water) above the scalp
    assert all(3 <= th <= 12 for th in thick) and abs(thick[0] - thick[1]) <= 2.0


def test_fov_cut(coarse):
    cut = make_scanner_head(11, spacing_mm=3.0, scale=0.5, fov_cut_z_mm=-10.0)
    lo, _ = cut.volume.centre_bounds_mm()
    full_lo, _ = coarse.volume.centre_bounds_mm()
    assert lo[2] >= -10.0 and lo[2] - 3.0 < -10.0 and full_lo[2] < -30
    k0 = int(round((lo[2] - full_lo[2]) / 3.0))
    assert np.array_equal(cut.volume.hu, coarse.volume.hu[:, :, k0:])
    for name, m in cut.labels.items():
        assert np.array_equal(m, coarse.labels[name][:, :, k0:]), name
    assert np.all(cut.volume.voxel_to_world(np.argwhere(cut.labels["body"]))[:, 2] >= -10)


def test_deterministic_and_seed_dependent(coarse):
    again = make_scanner_head(11, spacing_mm=3.0, scale=0.5)
    assert np.array_equal(again.volume.hu, coarse.volume.hu)
    assert np.array_equal(again.volume.affine, coarse.volume.affine)
    assert all(np.array_equal(again.labels[k], coarse.labels[k]) for k in LABELS)
    other = make_scanner_head(12, spacing_mm=3.0, scale=0.5)
    assert other.volume.shape != coarse.volume.shape or not np.array_equal(other.volume.hu, coarse.volume.hu)
    assert other.semi_axes_mm != coarse.semi_axes_mm


@pytest.mark.parametrize("kwargs, name", [
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"), (dict(spacing_mm=0.0), "spacing_mm"),
    (dict(spacing_mm=6.0), "spacing_mm"), (dict(scale=0.1), "scale"), (dict(scale=3.0), "scale"),
    (dict(margin_mm=-1.0), "margin_mm"), (dict(fov_cut_z_mm=float("nan")), "fov_cut_z_mm"),
    (dict(fov_cut_z_mm=500.0), "fov_cut_z_mm"),
])
def test_arguments_validated(kwargs, name):
    args = dict(seed=1, spacing_mm=3.0, scale=0.5) | kwargs
    with pytest.raises(ValueError, match=name):
        make_scanner_head(args.pop("seed"), **args)


def test_write_scanner_head(tmp_path, coarse):
    path = write_scanner_head(11, tmp_path / "head.nii.gz", spacing_mm=3.0, scale=0.5)
    vol = load_volume(path)
    assert vol.shape == coarse.volume.shape
    assert np.allclose(vol.affine, coarse.volume.affine) and np.allclose(vol.hu, coarse.volume.hu)
    with pytest.raises(ValueError, match=r"\.nii"):
        write_scanner_head(11, tmp_path / "head.mha", spacing_mm=3.0, scale=0.5)
