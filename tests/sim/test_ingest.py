"""CT ingest: readers, RAS affines (NIfTI, ITK LPS files, DICOM), resampling, cropping, bad inputs."""

from __future__ import annotations

import locale

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tfus.sim.ingest import (Volume, axis_aligned_affine, crop_volume, keep_locale, load_volume, resample, save_nifti,
                        to_sitk, voxel_to_world, world_to_voxel)


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _oblique_affine() -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = _rotation(0.3, -0.2, 0.5) @ np.diag([0.8, 1.1, 1.4])
    a[:3, 3] = [-20.0, 13.5, 7.25]
    return a


def _random_volume(shape=(9, 11, 13), affine=None) -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.uniform(-1000, 2000, size=shape).astype(np.float32),
                  _oblique_affine() if affine is None else affine)


def test_world_voxel_round_trip_oblique():
    a = _oblique_affine()
    pts = np.random.default_rng(1).uniform(-50, 50, size=(20, 3))
    np.testing.assert_allclose(voxel_to_world(a, world_to_voxel(a, pts)), pts, atol=1e-9)
    np.testing.assert_allclose(voxel_to_world(a, [0, 0, 0]), a[:3, 3])


def test_nifti_write_read_round_trip(tmp_path):
    vol = _random_volume()
    path = save_nifti(vol.hu, vol.affine, tmp_path / "ct.nii.gz")
    back = load_volume(path)
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    header = nib.load(str(path)).header
    assert header.get_xyzt_units()[0] == "mm" and int(header["sform_code"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]  # nothing half-written left


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_files_give_ras_affine(tmp_path, suffix):
    """A file written by SimpleITK (LPS physical space) reads back with the RAS affine it was made from."""
    vol = _random_volume()
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(to_sitk(vol.hu, vol.affine), str(path))
    back = load_volume(path)
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    # Independently: ITK's physical point of voxel (i, j, k) is LPS = RAS with x, y negated.
    image = sitk.ReadImage(str(path))
    lps = np.array(image.TransformIndexToPhysicalPoint((2, 3, 4)))
    np.testing.assert_allclose(back.voxel_to_world([2, 3, 4]), lps * [-1, -1, 1], atol=1e-5)


def test_itk_array_order_matches_voxel_index(tmp_path):
    hu = np.zeros((5, 6, 7), np.float32)
    hu[1, 2, 3] = 1234.0
    path = tmp_path / "x.mha"
    sitk.WriteImage(to_sitk(hu, np.eye(4)), str(path))
    assert sitk.ReadImage(str(path)).GetPixel(1, 2, 3) == 1234.0  # ITK index (x, y, z)
    back = load_volume(path)
    assert back.shape == (5, 6, 7) and back.hu[1, 2, 3] == 1234.0


def test_dicom_series_round_trip(tmp_path):
    """A DICOM series folder written slice by slice with SimpleITK reads back with the same HU and affine."""
    spacing, origin_lps = (0.9, 0.7, 1.5), (-30.0, -40.0, 12.0)
    hu = np.random.default_rng(2).integers(-1000, 2000, size=(6, 5, 4)).astype(np.int16)  # (X, Y, Z)
    image = sitk.GetImageFromArray(hu.transpose(2, 1, 0))
    image.SetSpacing(spacing)
    image.SetOrigin(origin_lps)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1"
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in [("0008|0060", "CT"), ("0020|000e", series), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(f"{p:.6f}" for p in pos)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", str(spacing[2])),
                           ("0008|0018", f"{series}.{k + 1}"), ("0028|1052", "0"), ("0028|1053", "1")]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        with keep_locale():  # GDCM's writer sets the C locale to "C" (ASCII text I/O for the whole process)
            writer.Execute(sl)
    encoding = locale.getpreferredencoding(False)
    back = load_volume(tmp_path)
    assert locale.getpreferredencoding(False) == encoding
    np.testing.assert_array_equal(back.hu, hu.astype(np.float32))
    np.testing.assert_allclose(back.spacing_mm, spacing, atol=1e-4)
    np.testing.assert_allclose(back.voxel_to_world([0, 0, 0]), np.multiply(origin_lps, [-1, -1, 1]), atol=1e-4)
    np.testing.assert_allclose(back.voxel_to_world([0, 0, 3]) - back.voxel_to_world([0, 0, 0]), [0, 0, 4.5],
                               atol=1e-4)


def test_resampling_preserves_world_position_of_a_feature():
    """A bright blob at a known world point is found at the same world point after resampling."""
    affine = _oblique_affine()
    shape = (40, 36, 30)
    centre_mm = voxel_to_world(affine, [20, 18, 15])
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    r2 = np.sum((voxel_to_world(affine, grid) - centre_mm) ** 2, axis=-1)
    vol = Volume((2000 * np.exp(-r2 / (2 * 3.0 ** 2))).astype(np.float32), affine)
    target = axis_aligned_affine(centre_mm - 15.0 + [0.3, -0.2, 0.1], 0.5)
    out = resample(vol, target, (61, 61, 61))
    w = out.hu / out.hu.sum()
    found = voxel_to_world(target, np.tensordot(w, np.stack(np.meshgrid(*[np.arange(61)] * 3, indexing="ij"), -1),
                                                 axes=3))
    np.testing.assert_allclose(found, centre_mm, atol=0.15)
    assert out.hu.max() == pytest.approx(2000, rel=0.1)


def test_resampling_fills_outside_with_water():
    vol = Volume(np.full((4, 4, 4), 900.0, np.float32), np.eye(4))
    out = resample(vol, axis_aligned_affine([-10, -10, -10], 1.0), (30, 30, 30), fill_hu=0.0)
    assert out.hu[0, 0, 0] == 0.0 and out.hu[11, 11, 11] == pytest.approx(900.0)


def test_crop_volume_keeps_world_coordinates():
    vol = _random_volume((20, 20, 20), axis_aligned_affine([-10, -10, -10], 1.0))
    crop = crop_volume(vol, (2.0, 0.0, -3.0), 6.0)
    np.testing.assert_allclose(crop.voxel_to_world([0, 0, 0]), [-1, -3, -6])
    assert crop.shape == (7, 7, 7)
    assert crop.hu[0, 0, 0] == vol.hu[9, 7, 4]
    with pytest.raises(ValueError, match="outside the CT"):
        crop_volume(vol, (100, 0, 0), 5.0)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        load_volume(tmp_path / "nope.nii.gz")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "ct.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="unsupported image format"):
        load_volume(path)


def test_corrupt_nifti(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match="bad.nii.gz"):
        load_volume(path)


def test_not_3d(tmp_path):
    path = tmp_path / "slice.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), str(path))
    with pytest.raises(ValueError, match="expected a 3D image"):
        load_volume(path)
    path4 = tmp_path / "series.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(path4))
    with pytest.raises(ValueError, match="expected a 3D image"):
        load_volume(path4)


def test_singleton_4th_dimension_is_3d(tmp_path):
    path = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)), str(path))
    assert load_volume(path).shape == (4, 5, 6)


def test_nan_voxels_name_the_file(tmp_path):
    data = np.zeros((5, 5, 5), np.float32)
    data[2, 2, 2] = np.nan
    data[1, 1, 1] = np.inf
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(ValueError, match=r"nan.nii.gz: image has 2 NaN/inf voxels"):
        load_volume(path)


def test_empty_dicom_folder(tmp_path):
    with pytest.raises(ValueError, match="no DICOM series"):
        load_volume(tmp_path)


def test_volume_validation():
    with pytest.raises(ValueError, match="`hu`"):
        Volume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(ValueError, match="`affine`"):
        Volume(np.zeros((4, 4, 4)), np.zeros((4, 4)))


def test_save_nifti_refuses_other_suffix(tmp_path):
    with pytest.raises(ValueError, match="must end in .nii"):
        save_nifti(np.zeros((2, 2, 2)), np.eye(4), tmp_path / "x.mha")
