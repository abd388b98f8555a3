"""Synthetic heads as a scanner CT shows them: a patient in air, with a face, air cavities, table, holder, metal.

:func:`tfus.sim.phantom.make_phantom` gives an ellipsoidal cranium in water. A real head CT has the patient
in **air** (−1000 HU), supine on a table, with air-filled cavities next to the skull that placement planning
and air handling must cope with. :func:`make_scanner_head` keeps ``make_phantom``'s cranium (for a seed the
same outline, layer thicknesses and bone HU: skin ~50, outer/inner tables ~1600–1900, diploë ~600–1000,
CSF ~10, brain ~30 HU) and adds, in RAS world mm (x left→right, y posterior→anterior, z inferior→superior;
head centre at the origin; sx, sy, sz the cranium's semi-axes):

* **face** (the box y > 0.3·sy, z < 0.1·sz below the skin; soft tissue ~40 HU), walled off from the brain by
  a cortical plate (anterior skull base / back of the face): two **orbits** (orbital fat ~−85 HU around
  ~15 HU eyes under a 2 mm eyelid, with a cortical rim), a soft-tissue nose over the **nasal** cavity (air,
  open to the outside through two nostrils), **sinuses** (a frontal sinus in the frontal bone above the
  orbits and two maxillary sinuses below them: air enclosed by cortical walls), teeth (~2200 HU);
* **ears**: an **ear canal** per side (an air cylinder along x, 25·scale mm in from the lateral surface at
  y ≈ 0, z ≈ −0.15·sz, in a bony sleeve beyond the skin), a soft-tissue pinna, and **mastoid** air cells
  (small air spheres) in a thickened bone block (~1200 HU) behind and below each canal; a neck below;
* a patient **table** (a 12 mm slab of ~150 HU carbon/plastic under the occiput, y < −sy) and a head
  **holder** (~400 HU, a 6 mm band behind and around the lower sides of the head, 2–5 mm from the scalp,
  resting on the table and touching the head at three pads);
* **metal** (3500 HU; scanners saturate metal at ≥ 3000): dental fillings and a scalp electrode.

HU values follow the generic CT ranges (air −1000, fat −100..−80, water 0, soft tissue 20–60, cancellous
bone 300–1000, cortical bone 1500–2000, metal ≥ 3000). ``scale`` shrinks the outline and the facial
anatomy; skin, walls and layer thicknesses stay in mm, with floors in voxels (walls ≥ 1.5 voxels, canals and
cells ≥ 0.75–0.9 voxel radius) so tiny test heads at 2–3 mm keep every structure. Gaussian noise (σ 8 HU)
lies on the patient and the objects; the air outside is exactly −1000. Everything is deterministic from the
seed and vectorised: masks are evaluated on each structure's bounding box, and bone walls / clearances come
from Euclidean distance transforms on small boxes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from tfus.sim.ingest import Volume, grid_covering, save_nifti
from tfus.sim.phantom import (ADULT_SEMI_AXES_MM, BRAIN_HU, CSF_HU, FIELDS, SHELL_MM, SKIN_HU, _draw_field,
                              _eval_field, _layers, check_head_args)

AIR_HU, SOFT_HU, FAT_HU, EYE_HU = -1000.0, 40.0, -85.0, 15.0
CORTICAL_HU, MASTOID_HU, TEETH_HU, METAL_HU = 1700.0, 1200.0, 2200.0, 3500.0
TABLE_HU, HOLDER_HU, NOISE_HU = 150.0, 400.0, 8.0
SKIN_MM, EYELID_MM, WALL_MM = 4.0, 2.0, 2.0  # facial skin; eyelid; thinnest bone wall round a cavity
TABLE_MM, HOLDER_MM, HOLDER_GAP_MM = 12.0, 6.0, (2.0, 5.0)
LABEL_MARGIN_MM = 10.0  # `face` and `ears` also cover this much air outside the skin
FACE_Y, FACE_Z = 0.3, 0.1  # the face: y > FACE_Y·sy and z < FACE_Z·sz
LABELS = ("intracranial", "orbits", "nasal", "sinuses", "ear_canals", "mastoid", "face", "ears",
          "table", "holder", "metal", "body")
INF = float("inf")


@dataclass(frozen=True, eq=False)
class ScannerHead:
    """A scanner-like head CT: ``volume`` (HU, air outside the body) and boolean ``labels`` (``LABELS``, each
    of ``volume.hu``'s shape); ``semi_axes_mm`` is the cranium's (sx, sy, sz)."""

    volume: Volume
    labels: dict[str, np.ndarray]
    semi_axes_mm: tuple[float, float, float] | None = None


def _box(ax, lo, hi, fn) -> np.ndarray:
    """Full-grid mask of ``fn(X, Y, Z)`` (sparse world mm) evaluated only inside the world box lo..hi."""
    m = np.zeros(tuple(len(a) for a in ax), dtype=bool)
    sl = tuple(slice(int(np.searchsorted(a, float(lo_))), int(np.searchsorted(a, float(hi_), "right")))
               for a, lo_, hi_ in zip(ax, lo, hi))
    if all(s.stop > s.start for s in sl):
        m[sl] = fn(*np.meshgrid(*(a[s] for a, s in zip(ax, sl)), indexing="ij", sparse=True))
    return m


def _ell(ax, c, s) -> np.ndarray:
    """Mask of the axis-aligned ellipsoid with centre ``c`` and semi-axes ``s`` (mm)."""
    c, s = [float(v) for v in c], [float(v) for v in s]
    return _box(ax, np.subtract(c, s), np.add(c, s), lambda X, Y, Z: ((X - c[0]) / s[0]) ** 2
                + ((Y - c[1]) / s[1]) ** 2 + ((Z - c[2]) / s[2]) ** 2 <= 1)


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - pad, 0), s.stop + pad) for s in ndimage.find_objects(mask.view(np.uint8))[0])


def _near(mask: np.ndarray, dist_mm: float, sp: float) -> np.ndarray:
    """Voxels within ``dist_mm`` (centre to centre) of ``mask``, the mask included."""
    out = np.zeros_like(mask)
    if mask.any():
        sl = _bbox(mask, int(dist_mm / sp) + 1)
        out[sl] = ndimage.distance_transform_edt(~mask[sl], sampling=sp) <= dist_mm
    return out


def _clear(mask: np.ndarray, keepout: np.ndarray, dist_mm: float, sp: float) -> np.ndarray:
    """``mask`` less its voxels within ``dist_mm`` of ``keepout``."""
    out = np.zeros_like(mask)
    if mask.any():
        sl = _bbox(mask, int(dist_mm / sp) + 1)
        k = keepout[sl]
        out[sl] = mask[sl] & (ndimage.distance_transform_edt(~k, sampling=sp) > dist_mm) if k.any() else mask[sl]
    return out


def _validate(seed, spacing_mm, scale, margin_mm, fov_cut_z_mm) -> None:
    check_head_args(seed, spacing_mm, scale, margin_mm)
    if fov_cut_z_mm is not None and not np.isfinite(fov_cut_z_mm):
        raise ValueError(f"`fov_cut_z_mm` must be a finite z in mm or None, got {fov_cut_z_mm}")


def make_scanner_head(seed: int, spacing_mm: float = 1.5, scale: float = 1.0, *, table: bool = True,
                      holder: bool = True, metal: bool = True, fov_cut_z_mm: float | None = None,
                      margin_mm: float = 25.0) -> ScannerHead:
    """A scanner-like head CT (module docstring), deterministic from ``seed``; ``margin_mm`` of air pads the
    head (the table may extend the grid below); ``fov_cut_z_mm`` crops every voxel below that z away."""
    _validate(seed, spacing_mm, scale, margin_mm, fov_cut_z_mm)
    sp, f32 = float(spacing_mm), np.float32
    rng = np.random.default_rng(int(seed))  # the same draws as make_phantom: the same cranium for a seed
    semi = np.asarray(ADULT_SEMI_AXES_MM, dtype=np.float64) * scale * rng.uniform(0.95, 1.05, size=3)
    fields = {name: _draw_field(rng) for name in FIELDS}
    frng = np.random.default_rng([int(seed), 1])  # face, ears, objects
    jit = lambda a: frng.uniform(1 - a, 1 + a)  # noqa: E731  (a relative jitter)
    sx, sy, sz = (float(v) for v in semi)
    wall = max(WALL_MM, 1.5 * sp)

    def ys(x, z):  # the cranium's anterior surface y at (x, z)
        return sy * np.sqrt(max(0.0, 1 - (x / sx) ** 2 - (z / sz) ** 2))

    nose_c, nose_s = np.array([0.0, ys(0, -0.4 * sz), -0.4 * sz]), np.array([0.14 * sx, 0.2 * sy, 0.22 * sz])
    y_table = -(sy + HOLDER_MM)  # the holder's outer face under the occiput
    lo = [-sx - margin_mm, -sy - margin_mm, -sz - margin_mm]
    if table:
        lo[1] = min(lo[1], y_table - TABLE_MM - sp)
    affine, shape = grid_covering(lo, [sx + margin_mm, nose_c[1] + nose_s[1] + margin_mm, sz + margin_mm], sp)
    ax = [(affine[i, 3] + sp * np.arange(shape[i])).astype(np.float32) for i in range(3)]
    if fov_cut_z_mm is not None and fov_cut_z_mm > ax[2][-2]:
        raise ValueError(f"`fov_cut_z_mm` = {fov_cut_z_mm} mm leaves no volume (the grid ends at z = "
                         f"{ax[2][-1]:.1f} mm)")

    # --- cranium: make_phantom's layered skull, air outside
    X, Y, Z = np.meshgrid(*ax, indexing="ij", sparse=True)
    r = np.sqrt((X / f32(sx)) ** 2 + (Y / f32(sy)) ** 2 + (Z / f32(sz)) ** 2)
    depth = (np.sqrt(X * X + Y * Y + Z * Z) + f32(1e-6)) * (1 - r) / np.maximum(r, f32(1e-6))  # mm below scalp
    depth[r < f32(1e-3)] = SHELL_MM + 1  # the centre voxel (the ray formula gives 1 mm there)
    del r
    inside = depth >= 0
    hu = np.full(shape, f32(AIR_HU))
    hu[inside] = BRAIN_HU
    shell = np.nonzero(inside & (depth < SHELL_MM))
    pts = [np.broadcast_to(a, shape)[shell] for a in (X, Y, Z)]
    d = np.sqrt(pts[0] ** 2 + pts[1] ** 2 + pts[2] ** 2) + f32(1e-6)
    hu[shell] = _layers(depth[shell], [p / d for p in pts], fields)
    intracranial = (hu == f32(CSF_HU)) | (hu == f32(BRAIN_HU))

    # --- nose, neck; the face replaces the cranium in its box, behind a bony plate
    nose = _ell(ax, nose_c, nose_s) & ~inside
    neck = _box(ax, (-0.5 * sx, -0.57 * sy, -INF), (0.5 * sx, 0.33 * sy, -0.45 * sz), lambda X, Y, Z:
                (X / (0.5 * sx)) ** 2 + ((Y + 0.12 * sy) / (0.45 * sy)) ** 2 <= 1) & ~inside
    hu[nose | neck] = SOFT_HU
    box = (Y > f32(FACE_Y * sy)) & (Z < f32(FACE_Z * sz))
    face_in = inside & box
    hu[face_in] = np.where(depth[face_in] < SKIN_MM, f32(SKIN_HU), f32(SOFT_HU))
    tp = max(3.0, 1.5 * sp)
    hu[intracranial & ~face_in & (Y > f32(FACE_Y * sy - tp)) & (Z < f32(FACE_Z * sz + tp))] = CORTICAL_HU
    deep = inside & (depth >= SKIN_MM)  # where bone may be painted

    # --- orbits, eyes, nasal cavity and nostrils
    ox, oz = 0.43 * sx * jit(0.04), (-0.14 + frng.uniform(-0.02, 0.02)) * sz
    o_s = np.array([0.22 * sx, 0.24 * sy, 0.2 * sz]) * jit(0.05)
    re = max(12.0 * scale * jit(0.05), 1.2 * sp)
    eye_y = ys(ox, oz) - re - EYELID_MM
    orbits = (_ell(ax, (-ox, eye_y - 0.09 * sy, oz), o_s) | _ell(ax, (ox, eye_y - 0.09 * sy, oz), o_s))
    orbits &= face_in & (depth >= EYELID_MM)
    eyes = (_ell(ax, (-ox, eye_y, oz), (re,) * 3) | _ell(ax, (ox, eye_y, oz), (re,) * 3)) & orbits
    zc, nx, yn, rn = -0.42 * sz, 0.05 * sx, nose_c[1] + 0.04 * sy, max(0.04 * sx, 0.75 * sp)
    nostrils = _box(ax, (-nx - rn, yn - rn, nose_c[2] - 0.3 * sz), (nx + rn, yn + rn, zc), lambda X, Y, Z:
                    np.minimum(abs(X - nx), abs(X + nx)) ** 2 + (Y - yn) ** 2 <= rn * rn)
    cavity = _ell(ax, (0, ys(0, zc) - 0.2 * sy, zc), (0.12 * sx, 0.3 * sy, 0.2 * sz))
    cavity &= deep | _ell(ax, nose_c, nose_s - max(2.0, 0.75 * sp))  # opens only through the nostrils
    nasal = (cavity | nostrils) & (inside | nose)

    # --- ears: canals, pinnae, mastoid blocks with air cells
    ye, ze = frng.uniform(-0.03, 0.03) * sy, (-0.15 + frng.uniform(-0.02, 0.02)) * sz
    xe = sx * np.sqrt(1 - (ye / sy) ** 2 - (ze / sz) ** 2)  # the lateral surface's x at the canal
    rc, length, pt = max(3.5 * scale, 0.75 * sp), 25.0 * scale, max(2.5, 0.75 * sp)
    canals, pinnae, blocks, cells_raw = (np.zeros(shape, dtype=bool) for _ in range(4))
    rcell_max, rclus = max(2.5 * scale, 0.9 * sp), max(0.1 * sx, 2 * sp)  # air cells; their cluster
    for sgn in (-1.0, 1.0):
        x_in, x_out = sorted((sgn * (xe - length), sgn * INF))  # from `length` inside the surface outwards
        canals |= _box(ax, (x_in, ye - rc, ze - rc), (x_out, ye + rc, ze + rc),
                       lambda X, Y, Z: (Y - ye) ** 2 + (Z - ze) ** 2 <= rc * rc)
        pinnae |= _ell(ax, (sgn * (xe + 0.5 * pt), ye - 0.04 * sy, ze + 0.02 * sz), (pt, 0.22 * sy, 0.3 * sz))
        ym, zm = ye - 0.15 * sy, ze - 0.12 * sz
        cm = np.array([sgn * (sx * np.sqrt(1 - (ym / sy) ** 2 - (zm / sz) ** 2) - rclus - wall), ym, zm])
        blocks |= _ell(ax, cm, (rclus + wall + rcell_max,) * 3)
        for _ in range(int(frng.integers(8, 15))):
            v = frng.normal(size=3)
            c = cm + v / np.linalg.norm(v) * rclus * frng.uniform() ** (1 / 3)
            cells_raw |= _ell(ax, c, (max(frng.uniform(1.2, 2.5) * scale, 0.9 * sp),) * 3)
    pinnae &= ~inside & ~canals
    hu[blocks & deep] = MASTOID_HU

    # --- teeth (painted before cavity walls) and the metal in them
    zt, ht, ax_t, ay_t = -0.72 * sz, max(0.05 * sz, 0.75 * sp), 0.33 * sx, 0.3 * sy
    y0 = ys(0, zt) - SKIN_MM - 0.06 * sy - ay_t
    rho_in = 1 - max(0.25, 1.2 * sp / min(ax_t, ay_t))
    teeth = _box(ax, (-ax_t, y0, zt - ht), (ax_t, y0 + ay_t, zt + ht), lambda X, Y, Z: np.abs(
        (X / ax_t) ** 2 + ((Y - y0) / ay_t) ** 2 - (1 + rho_in ** 2) / 2) <= (1 - rho_in ** 2) / 2) & deep
    hu[teeth] = TEETH_HU

    # --- sinuses; cavity walls; cavity contents
    fz = 0.15 * sz * jit(0.1)
    fs = np.array([0.15 * sx, max(0.05 * sy, sp), 0.11 * sz]) * jit(0.08)
    sinuses = _ell(ax, (0, ys(0, fz) - SKIN_MM - wall - fs[1] - 1.0, fz), fs)
    mx, mz = 0.36 * sx * jit(0.04), -0.53 * sz * jit(0.03)
    ms = np.array([0.14 * sx, 0.13 * sy, 0.12 * sz]) * jit(0.08)
    for sgn in (-1.0, 1.0):
        sinuses |= _ell(ax, (sgn * mx, ys(mx, mz) - SKIN_MM - wall - ms[1] - 1.0, mz), ms)
    keepout = orbits | nasal | canals | ~deep
    sinuses = _clear(sinuses, keepout, wall, sp)
    mastoid = _clear(cells_raw, keepout, wall, sp)
    ear_canals = canals & inside
    walls = np.zeros(shape, dtype=bool)
    for group in (orbits | nasal | sinuses, (ear_canals | mastoid) & (X < 0), (ear_canals | mastoid) & (X > 0)):
        walls |= _near(group, wall, sp)
    hu[walls & deep] = CORTICAL_HU
    hu[orbits] = FAT_HU
    hu[eyes] = EYE_HU
    hu[nasal | canals | sinuses | mastoid] = AIR_HU
    hu[pinnae] = SOFT_HU
    body = inside | nose | neck | pinnae
    intracranial &= (hu == f32(CSF_HU)) | (hu == f32(BRAIN_HU))  # not repainted by the face or ears

    # --- objects: holder, table, metal
    gap_field, a = _draw_field(frng), frng.uniform(0.75, 0.95)
    pads = np.array([[0, -1, 0], [np.sin(a), -np.cos(a), 0], [-np.sin(a), -np.cos(a), 0]], dtype=np.float32)

    def holder_fn(X, Y, Z):
        rr = np.sqrt((X / f32(sx)) ** 2 + (Y / f32(sy)) ** 2 + (Z / f32(sz)) ** 2) + f32(1e-6)
        n = [np.broadcast_to(v, rr.shape) for v in (X / f32(sx) / rr, Y / f32(sy) / rr, Z / f32(sz) / rr)]
        od = np.sqrt(X * X + Y * Y + Z * Z) * (rr - 1) / rr  # mm outside the scalp along the ray
        bump = np.max([np.exp(-((n[0] - p[0]) ** 2 + (n[1] - p[1]) ** 2 + (n[2] - p[2]) ** 2) / f32(0.15 ** 2))
                       for p in pads], axis=0)
        gap = np.clip(f32(3.5) + f32(1.2) * _eval_field(gap_field, n), *HOLDER_GAP_MM) * (1 - bump)
        band = (n[1] < -0.35) & (np.abs(n[2]) < 0.55) & (od >= gap) & (od < gap + f32(HOLDER_MM))
        return band & (Y > y_table)  # flat where it rests on the table

    holder_m = _box(ax, (-INF,) * 3, (INF, -0.3 * sy, INF), holder_fn) & ~body if holder else np.zeros(shape, bool)
    table_m = np.zeros(shape, dtype=bool)
    if table:
        table_m[:] = (Y <= y_table) & (Y > y_table - TABLE_MM)
    hu[holder_m] = HOLDER_HU
    hu[table_m] = TABLE_HU
    metal_m = np.zeros(shape, dtype=bool)
    if metal:
        rho = (1 + rho_in) / 2
        for th in np.linspace(0.15, 0.85, 4) * np.pi + frng.uniform(-0.04, 0.04, 4) * np.pi:  # dental fillings
            c = (ax_t * rho * np.cos(th), y0 + ay_t * rho * np.sin(th), zt)
            metal_m |= _ell(ax, c, (max(2.0, 0.9 * sp),) * 3)
        w, v = frng.uniform(0.3, 0.5), frng.uniform(-0.3, 0.1)  # a scalp electrode on the upper side
        u = frng.choice([-1.0, 1.0]) * np.sqrt(1 - v * v - w * w)
        metal_m |= _ell(ax, (u * sx, v * sy, w * sz), (max(3.0, 0.9 * sp),) * 3)
        hu[metal_m] = METAL_HU
    objects = body | holder_m | table_m | metal_m
    hu += np.where(objects, np.random.default_rng([int(seed), 2]).standard_normal(shape, dtype=np.float32)
                   * f32(NOISE_HU), f32(0))
    hu[~objects] = AIR_HU

    near_skin = depth > -LABEL_MARGIN_MM
    face = box & (near_skin | _ell(ax, nose_c, nose_s + LABEL_MARGIN_MM))
    ex = max(length, LABEL_MARGIN_MM + 2 * pt + sp)
    ears = _ell(ax, (-xe, ye, ze), (ex, 0.3 * sy, 0.36 * sz)) | _ell(ax, (xe, ye, ze), (ex, 0.3 * sy, 0.36 * sz))
    labels = dict(intracranial=intracranial, orbits=orbits, nasal=nasal, sinuses=sinuses, ear_canals=ear_canals,
                  mastoid=mastoid, face=face, ears=ears & near_skin, table=table_m, holder=holder_m,
                  metal=metal_m, body=body)
    if fov_cut_z_mm is not None:  # the scanner's field of view ends at this z
        k0 = int(np.searchsorted(ax[2], f32(fov_cut_z_mm)))
        hu, affine = hu[:, :, k0:], affine.copy()
        affine[2, 3] += sp * k0
        labels = {k: np.ascontiguousarray(m[:, :, k0:]) for k, m in labels.items()}
    return ScannerHead(Volume(np.ascontiguousarray(hu), affine), labels, (sx, sy, sz))


def write_scanner_head(seed: int, path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`make_scanner_head` ``(seed, **kwargs)``'s HU volume as NIfTI (``.nii``/``.nii.gz``)."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: scanner-head output must end in .nii or .nii.gz")
    volume = make_scanner_head(seed, **kwargs).volume
    return save_nifti(volume.hu, volume.affine, path)
