"""CT ingest, world coordinates, resampling and NIfTI output.

A :class:`Volume` is HU values on a voxel grid ``(X, Y, Z)`` plus the 4×4 affine that maps voxel indices
``(i, j, k, 1)`` to world millimetres in **RAS** (NIfTI's convention). Readers:

* ``.nii`` / ``.nii.gz`` through nibabel (the affine is nibabel's best affine: sform, else qform);
* ``.mha`` / ``.mhd`` / ``.nrrd`` files and DICOM series folders through SimpleITK. ITK's physical space
  is **LPS**, so its direction·spacing/origin are flipped in x and y to RAS here (the single place).

Resampling uses SimpleITK (linear interpolation) onto any target grid given by an affine and a shape;
points outside the source get 0 HU (water), which is what the simulation treats as coupling medium.
"""

from __future__ import annotations

import contextlib
import locale
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)


@dataclass(frozen=True, eq=False)
class Volume:
    """HU image ``hu`` (X, Y, Z) float32 with ``affine`` (4, 4): voxel index → world mm (RAS)."""

    hu: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        hu = np.asarray(self.hu, dtype=np.float32)
        affine = np.asarray(self.affine, dtype=np.float64)
        if hu.ndim != 3:
            raise ValueError(f"`hu` must be a 3D array (X, Y, Z), got shape {hu.shape}")
        if min(hu.shape) < 1:
            raise ValueError(f"`hu` must not be empty, got shape {hu.shape}")
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"`affine` must be a finite 4x4 matrix, got shape {affine.shape}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12 or not np.allclose(affine[3], [0, 0, 0, 1]):
            raise ValueError("`affine` must be invertible with last row (0, 0, 0, 1)")
        if not np.all(np.isfinite(hu)):
            raise ValueError(f"`hu` has {int(np.count_nonzero(~np.isfinite(hu)))} NaN/inf voxels")
        object.__setattr__(self, "hu", hu)
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along each array axis (column norms of the affine)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    def world_to_voxel(self, points_mm) -> np.ndarray:
        return world_to_voxel(self.affine, points_mm)

    def voxel_to_world(self, points_vox) -> np.ndarray:
        return voxel_to_world(self.affine, points_vox)

    def contains_mm(self, point_mm, margin_vox: float = 0.0) -> bool:
        """Whether a world point lies within the voxel grid (voxel centres ± half a voxel)."""
        v = self.world_to_voxel(point_mm)
        lo, hi = -0.5 + margin_vox, np.asarray(self.shape) - 0.5 - margin_vox
        return bool(np.all(v >= lo) and np.all(v <= hi))

    def centre_bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box (lo, hi) of the voxel centres."""
        n = np.asarray(self.shape, dtype=float) - 1
        idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float) * n
        pts = self.voxel_to_world(idx)
        return pts.min(axis=0), pts.max(axis=0)

    def corners_mm(self) -> np.ndarray:
        """World positions (8, 3) of the outer corners of the voxel grid (half a voxel past the centres)."""
        n = np.asarray(self.shape, dtype=float)
        idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
        return self.voxel_to_world(idx * n - 0.5)


def grid_covering(lo_mm, hi_mm, spacing_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An axis-aligned grid ``(affine, shape)`` at ``spacing_mm`` on the lattice of multiples of the spacing
    (world mm), covering the box ``lo_mm``..``hi_mm``."""
    lo, hi = np.asarray(lo_mm, dtype=np.float64), np.asarray(hi_mm, dtype=np.float64)
    origin = np.floor(lo / spacing_mm + 1e-9) * spacing_mm
    shape = tuple(int(n) for n in np.floor((hi - origin) / spacing_mm + 1e-9).astype(int) + 1)
    return axis_aligned_affine(origin, spacing_mm), shape


def voxel_to_world(affine: np.ndarray, points_vox) -> np.ndarray:
    """(..., 3) voxel indices → (..., 3) world mm."""
    p = np.asarray(points_vox, dtype=np.float64)
    return p @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(affine: np.ndarray, points_mm) -> np.ndarray:
    """(..., 3) world mm → (..., 3) fractional voxel indices."""
    p = np.asarray(points_mm, dtype=np.float64)
    inv = np.linalg.inv(affine)
    return p @ inv[:3, :3].T + inv[:3, 3]


def sample_nearest(array: np.ndarray, affine: np.ndarray, points_mm, fill=0) -> np.ndarray:
    """Values of ``array`` at the voxels nearest to world points (..., 3); ``fill`` outside the grid."""
    v = np.rint(world_to_voxel(affine, points_mm)).astype(int)
    ok = np.all((v >= 0) & (v < np.asarray(array.shape)), axis=-1)
    out = np.full(v.shape[:-1], fill, dtype=array.dtype)
    out[ok] = array[tuple(v[ok].T)]
    return out


def axis_aligned_affine(origin_mm, spacing_mm: float) -> np.ndarray:
    """An affine with isotropic ``spacing_mm`` along +x, +y, +z (RAS) and voxel (0, 0, 0) at ``origin_mm``."""
    a = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    a[:3, 3] = np.asarray(origin_mm, dtype=np.float64)
    return a


# ----------------------------------------------------------------------------------------------- reading

def load_volume(path: str | os.PathLike) -> Volume:
    """Read a CT: ``.nii``/``.nii.gz`` (nibabel), ``.mha``/``.mhd``/``.nrrd`` or a DICOM folder (SimpleITK).

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` (naming the file) for an
    unsupported extension, an unreadable file, an image that is not 3D, or NaN/inf voxels.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CT file not found: {path}")
    if path.is_dir():
        hu, affine = _read_dicom_dir(path)
    elif path.name.lower().endswith(NIFTI_SUFFIXES):
        hu, affine = _read_nifti(path)
    elif path.name.lower().endswith(ITK_SUFFIXES):
        hu, affine = _read_itk_file(path)
    else:
        raise ValueError(f"{path}: unsupported image format (use .nii, .nii.gz, .mha, .mhd, .nrrd "
                         "or a DICOM series folder)")
    hu = _as_3d(hu, path)
    bad = int(np.count_nonzero(~np.isfinite(hu)))
    if bad:
        raise ValueError(f"{path}: image has {bad} NaN/inf voxels")
    return Volume(hu, affine)


def _as_3d(data: np.ndarray, path: Path) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:  # (X, Y, Z, 1) from 4D NIfTI headers
        data = data[..., 0]
    if data.ndim != 3 or min(data.shape) < 2:
        raise ValueError(f"{path}: expected a 3D image, got shape {data.shape}")
    return np.asarray(data, dtype=np.float32)


@contextlib.contextmanager
def keep_locale():
    """Restore the process locale after SimpleITK/GDCM I/O: GDCM's DICOM writer switches the C locale to
    "C" (measured: Python's default text encoding then becomes ASCII for the rest of the process)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib  # noqa: PLC0415

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)  # applies scl_slope/inter
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise ValueError(f"{path}: cannot read NIfTI image ({exc.__class__.__name__}: {exc})") from None
    return data, np.asarray(img.affine, dtype=np.float64)


def _read_itk_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk  # noqa: PLC0415

    try:
        with keep_locale():
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ValueError(f"{path}: cannot read image ({_first_line(exc)})") from None
    return _from_sitk(image, path)


def _read_dicom_dir(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk  # noqa: PLC0415

    with keep_locale():
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
    if not series:
        raise ValueError(f"{path}: folder holds no DICOM series")
    files = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), sid) for sid in series}
    sid = max(sorted(files), key=lambda s: len(files[s]))  # the largest series (deterministic tie-break)
    if len(series) > 1:
        log.warning("%s: %d DICOM series; using %s (%d files)", path, len(series), sid, len(files[sid]))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files[sid])
    try:
        with keep_locale():
            image = reader.Execute()
    except RuntimeError as exc:
        raise ValueError(f"{path}: cannot read DICOM series ({_first_line(exc)})") from None
    return _from_sitk(image, path)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else exc.__class__.__name__


def _from_sitk(image, path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk  # noqa: PLC0415

    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: expected a 3D scalar image, got {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # ITK arrays are (z, y, x)
    return data, sitk_affine_ras(image)


def sitk_affine_ras(image) -> np.ndarray:
    """The RAS voxel→world affine of a SimpleITK image (ITK stores LPS direction, spacing, origin)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]
    lps[:3, 3] = image.GetOrigin()
    return _LPS @ lps


def to_sitk(hu: np.ndarray, affine: np.ndarray):
    """A SimpleITK image of an (X, Y, Z) array with a RAS affine (the inverse of :func:`sitk_affine_ras`)."""
    import SimpleITK as sitk  # noqa: PLC0415

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(hu).transpose(2, 1, 0)))
    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing[None, :]).ravel()))
    image.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
    return image


# ------------------------------------------------------------------------------------ resampling, crop

def resample(volume: Volume, affine: np.ndarray, shape, fill_hu: float = 0.0) -> Volume:
    """Linear resampling (SimpleITK) of ``volume`` onto the grid ``(affine, shape)``; outside: ``fill_hu``."""
    import SimpleITK as sitk  # noqa: PLC0415

    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`shape` must be three positive integers, got {shape}")
    reference = to_sitk(np.zeros((1, 1, 1), np.float32), affine)
    source = to_sitk(volume.hu, volume.affine)
    out = sitk.Resample(source, shape, sitk.Transform(), sitk.sitkLinear, reference.GetOrigin(),
                        reference.GetSpacing(), reference.GetDirection(), float(fill_hu),
                        sitk.sitkFloat32)
    hu = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    return Volume(np.ascontiguousarray(hu), np.asarray(affine, dtype=np.float64))


def crop_volume(volume: Volume, center_mm, size_mm) -> Volume:
    """The sub-volume (no resampling) of whole voxels covering a world box ``size_mm`` around ``center_mm``."""
    size = np.broadcast_to(np.asarray(size_mm, dtype=np.float64), (3,))
    if np.any(size <= 0):
        raise ValueError(f"`crop_mm` must be > 0, got {size_mm}")
    c = np.asarray(center_mm, dtype=np.float64)
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size / 2 + c
    vox = volume.world_to_voxel(corners)
    lo = np.clip(np.floor(vox.min(axis=0)).astype(int), 0, None)
    hi = np.minimum(np.ceil(vox.max(axis=0)).astype(int) + 1, volume.shape)
    if np.any(hi <= lo):
        raise ValueError(f"crop box of {size_mm} mm around {tuple(c)} mm lies outside the CT")
    affine = volume.affine.copy()
    affine[:3, 3] = voxel_to_world(volume.affine, lo)
    return Volume(volume.hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], affine)


# ----------------------------------------------------------------------------------------------- writing

def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``array`` (X, Y, Z) with a voxel→world-mm RAS affine; atomic (temp file, then rename)."""
    import nibabel as nib  # noqa: PLC0415

    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{path}: NIfTI output must end in .nii or .nii.gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)  # scanner-anatomical: viewers place it in world space
    img.set_sform(img.affine, code=1)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
