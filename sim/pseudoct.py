"""T1-weighted MRI → pseudo-CT in HU, by segmentation (scalp, skull, intracranial space) and class HU.

The method is the segmentation route of the field's T1-only tools (BabelBrain's T1-only mode: a skull mask
with cortical and trabecular bone; PRESTUS' layered medium: scalp, cortical, trabecular, brain, water), with
the skull found in the subject's own image the way MR skull-surface estimation does it (Dogdas et al. 2005,
Hum. Brain Mapp. 26:273; FSL BET's skull surfaces): in a T1-weighted image cortical bone is black (few mobile
protons), fatty diploic marrow is light, and scalp fat is bright (Allen 2011, Semin. Musculoskelet. Radiol.
15:247). Steps, on the T1's own grid and affine:

1. **Head**: voxels above a threshold between the background class and the head (Otsu), the largest
   component, closed and hole-filled (the dark skull inside the scalp becomes head).
2. **Intracranial seed**: a given brain mask, or Colin27's registered onto the T1 (:mod:`sim.brainmask`).
3. **Tissue classes** in the shell between brain and scalp (never absolute intensities): Otsu splits the
   dark class (bone, CSF) from the rest; a second Otsu on the rest splits marrow/fat from soft tissue.
   Every threshold below is a class boundary of this image, so any scanner scale (uint8, int16, float) works.
4. **Skull** = the dark layer that encloses the brain (within ``max_skull_mm`` of it, deeper than
   ``scalp_min_mm`` below the head surface) plus the bright marrow that lies against it outward (at most
   ``diploe_max_mm``), minus a ``csf_mm`` rim around the brain (CSF is as dark as bone in T1: the inner table
   is placed past it), closed by one voxel.
5. **HU**: skull voxels that are dark, or touch the scalp or the intracranial space, are cortical
   (``cortical_hu``, the BabelBrain rule "in contact with skin and brain is cortical"); light skull voxels
   inside are trabecular (``trabecular_hu``). The two values are those that the HU → medium map of
   :mod:`sim.medium` turns into ITRUSST cortical bone (HU 1625 → 2800 m/s, 1853 kg/m³; PRESTUS' cortical
   layer 2800 m/s, 1850 kg/m³) and ITRUSST trabecular bone's sound speed (HU 1000 → 2300 m/s; PRESTUS'
   trabecular 2300 m/s) — Aubry et al. 2022, JASA 152:1003, Table I. Soft tissue 42 HU (the soft-tissue value
   of the ZTE/PETRA pseudo-CTs, Miscouridou et al. 2022, IEEE TUFFC 69:2896), air outside the head −1000 HU.

Limits of any T1-only skull: air (sinuses, mastoid cells) is as dark as bone and is labelled bone; the CSF/inner
table boundary is assumed (``csf_mm``). T1-derived pseudo-CTs carry skull errors of ~300–400 HU even with CNNs
(Yaakub et al. 2023, Brain Stimul. 16:75: 319 HU; Miscouridou 2022: 398 HU), which is why the quality
figures of :mod:`sim.skullqc` go with every pseudo-CT.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from tfus.sim.coupling import largest_component
from tfus.sim.ingest import Volume

AIR_HU = -1000.0


@dataclass(frozen=True)
class PseudoCTConfig:
    """Constants of the T1 → pseudo-CT method (module docstring); lengths in mm, values in HU.

    HU values: sourced in the module docstring. The lengths are search limits of the segmentation, chosen
    around published anatomy, not fitted: ``max_skull_mm`` = 16 covers the thickest adult vault sites
    (occipital means up to 8.2 mm, Li et al. 2007; SD ~2.5 mm in a CT series of 100 adults, 7.98 ± 2.47 mm;
    ~13 mm at +2 SD) plus CSF; ``diploe_max_mm``
    = 5 is the diploë of a ~7 mm vault with ~1–2 mm tables; ``scalp_min_mm`` = 2 keeps the skin (and its
    partial-volume edge) out of the bone; ``csf_mm`` = 1 is an assumption — T1 cannot separate CSF from the
    inner table; docs/VALIDATION.md shows that 2 mm changes the Colin27 thickness by 0.5 mm and the simulated
    transmission by 4 %.
    """

    csf_mm: float = 1.0
    max_skull_mm: float = 16.0
    scalp_min_mm: float = 2.0
    diploe_max_mm: float = 5.0
    cortical_hu: float = 1625.0
    trabecular_hu: float = 1000.0
    soft_tissue_hu: float = 42.0

    def __post_init__(self) -> None:
        for name in ("csf_mm", "scalp_min_mm", "diploe_max_mm"):
            if not 0 <= getattr(self, name) <= 10:
                raise ValueError(f"`{name}` must be in [0, 10] mm, got {getattr(self, name)}")
        if not 4 <= self.max_skull_mm <= 30:
            raise ValueError(f"`max_skull_mm` must be in [4, 30] mm, got {self.max_skull_mm}")
        if not 300 < self.trabecular_hu <= self.cortical_hu <= 3000:
            raise ValueError("HU values must satisfy 300 < `trabecular_hu` <= `cortical_hu` <= 3000, got "
                             f"{self.trabecular_hu}, {self.cortical_hu}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PseudoCT:
    """The pseudo-CT (``ct``, HU on the T1's grid) and the masks it was built from (bool, same grid)."""

    ct: Volume
    head: np.ndarray
    skull: np.ndarray
    intracranial: np.ndarray
    classes: dict  # class levels of this image: brain, dark, soft, marrow medians and the thresholds


def check_t1(t1: Volume, name: str = "T1") -> None:
    """One-line ``ValueError`` for inputs that are not a head T1 (CT in HU, constant, negative images)."""
    data = t1.hu
    lo, hi = float(np.percentile(data, 0.5)), float(np.percentile(data, 99.5))
    if lo < -200 and hi > 300:
        raise ValueError(f"{name}: values from {lo:.0f} to {hi:.0f} look like a CT in HU (air at -1000), not a "
                         "T1-weighted MRI; pass a CT as a CT (tfus generate --subjects)")
    if not hi > lo:
        raise ValueError(f"{name}: the image is constant ({lo:g}); expected a T1-weighted head MRI")
    if lo < -0.05 * hi:  # more than 0.5 % of the voxels clearly below zero
        raise ValueError(f"{name}: {100 * np.mean(data < 0):.1f} % of the voxels are negative; a T1-weighted "
                         "magnitude image is not (is this a phase or difference image?)")
    if min(t1.shape) < 16:
        raise ValueError(f"{name}: shape {t1.shape} is too small for a head (need >= 16 voxels per axis)")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (the split maximising the between-class variance) of a 1D sample."""
    counts, edges = np.histogram(values, bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts).astype(np.float64)
    m0 = np.cumsum(counts * centres)
    w1 = w0[-1] - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / w0[-1] - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return float(centres[int(np.argmax(between))])


def otsu_thresholds3(values: np.ndarray, bins: int = 128) -> tuple[float, float]:
    """Two thresholds splitting a 1D sample into three classes with the largest between-class variance."""
    counts, edges = np.histogram(values, bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w = np.concatenate([[0], np.cumsum(counts)]).astype(np.float64)
    m = np.concatenate([[0], np.cumsum(counts * centres)])
    i, j = np.triu_indices(bins + 1, k=1)
    keep = (i > 0) & (j < bins)
    i, j = i[keep], j[keep]
    parts = [(w[i], m[i]), (w[j] - w[i], m[j] - m[i]), (w[-1] - w[j], m[-1] - m[j])]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = sum(np.where(wk > 0, mk * mk / wk, 0.0) for wk, mk in parts)
    best = int(np.argmax(score))
    return float(edges[i[best]]), float(edges[j[best]])


def head_mask_t1(t1: Volume) -> np.ndarray:
    """Head of a T1: above the background/head Otsu split, largest component, closed, holes filled."""
    data = t1.hu
    mask = data > 0.5 * otsu_threshold(data[data > np.percentile(data, 1)])
    if not mask.any():
        raise ValueError("no head found in the image")
    mask = ndimage.binary_closing(largest_component(mask), iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    axis = _superior_axis(t1.affine)  # also per axial slice: a field of view cut at the skull base is open
    for k in range(mask.shape[axis]):
        index = [slice(None)] * 3
        index[axis] = k
        mask[tuple(index)] = ndimage.binary_fill_holes(mask[tuple(index)])
    return mask


def _superior_axis(affine: np.ndarray) -> int:
    return int(np.argmax(np.abs(affine[2, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))


def t1_to_pseudo_ct(t1: Volume, brain_mask: np.ndarray | None = None, config: PseudoCTConfig | None = None,
                    name: str = "T1") -> PseudoCT:
    """A pseudo-CT of ``t1`` (intensities in ``t1.hu``, any scale) on its own grid; see the module docstring.

    ``brain_mask``: bool (X, Y, Z) on the T1's grid; ``None`` registers Colin27's. ``ValueError`` (one line,
    naming ``name``) where the image is not a head T1 or no skull layer is found.
    """
    cfg = config or PseudoCTConfig()
    check_t1(t1, name)
    spacing = t1.spacing_mm
    head = head_mask_t1(t1)
    if brain_mask is None:
        from tfus.sim.brainmask import register_brain_mask  # noqa: PLC0415

        brain_mask = register_brain_mask(t1)
    brain = np.asarray(brain_mask, dtype=bool) & head
    if brain.shape != t1.shape:
        raise ValueError(f"brain mask shape {np.shape(brain_mask)} differs from the {name} shape {t1.shape}")
    if brain.sum() * np.prod(spacing) < 200e3:  # mm³: an adult brain is ~1.2 L
        raise ValueError(f"{name}: the brain mask covers {brain.sum() * np.prod(spacing) / 1e3:.0f} mL; expected an "
                         "adult brain (> 200 mL) inside the head")
    dist_brain = ndimage.distance_transform_edt(~brain, sampling=spacing)
    depth = ndimage.distance_transform_edt(head, sampling=spacing)  # mm below the head surface
    band = head & ~brain & (dist_brain <= cfg.max_skull_mm)
    classes = _classes(t1.hu, brain, band, name)
    skull = _skull(t1.hu, band, dist_brain, depth, classes, cfg, spacing)
    if skull.sum() == 0:
        raise ValueError(f"{name}: no skull layer found between the brain and the scalp")
    intracranial = head & ~skull & (brain | (dist_brain <= cfg.csf_mm + 0.5 * spacing.max()))
    hu = np.full(t1.shape, AIR_HU, dtype=np.float32)
    hu[head] = cfg.soft_tissue_hu
    edge = skull & ndimage.binary_dilation(~skull & head)
    light = skull & (t1.hu >= classes["bone_marrow_split"]) & ~edge
    hu[skull] = cfg.cortical_hu
    hu[light] = cfg.trabecular_hu
    return PseudoCT(Volume(hu, t1.affine), head, skull, intracranial, classes)


def _classes(data: np.ndarray, brain: np.ndarray, band: np.ndarray, name: str) -> dict:
    values = data[band]
    if values.size < 1000:
        raise ValueError(f"{name}: no scalp or skull around the brain ({values.size} voxels between brain and "
                         "head surface); is the image brain-extracted?")
    brain_level = float(np.median(data[brain]))
    top = float(np.percentile(data[band | brain], 99.5))
    if brain_level < 0.15 * top:  # in a CT bone outshines brain ~60-fold; in a T1 brain is a bright class
        raise ValueError(f"{name}: the brain ({brain_level:.3g}) is far darker than the brightest tissue ({top:.3g}), "
                         "as in a CT; expected a T1-weighted MRI (pass a CT as a CT: tfus generate --subjects)")
    t1_, t2_ = otsu_thresholds3(values)  # dark (bone, CSF) | soft tissue | marrow and fat
    dark = float(np.median(values[values < t1_]))
    soft = float(np.median(values[(values >= t1_) & (values < t2_)]))
    marrow = float(np.median(values[values >= t2_]))
    t_dark, t_marrow = 0.5 * (dark + soft), t2_
    if not dark < 0.7 * brain_level:
        raise ValueError(f"{name}: no dark skull layer around the brain (dark class {dark:.3g} vs brain "
                         f"{brain_level:.3g}); expected a T1-weighted image with scalp and skull")
    return {"brain": brain_level, "dark": dark, "soft": soft, "marrow": marrow, "dark_split": t_dark,
            "marrow_split": t_marrow, "bone_marrow_split": 0.5 * (dark + marrow)}


def _skull(data, band, dist_brain, depth, classes, cfg: PseudoCTConfig, spacing) -> np.ndarray:
    inner = dist_brain > cfg.csf_mm
    deep = depth >= cfg.scalp_min_mm
    dark = band & inner & deep & (data < classes["dark_split"])
    labels, n = ndimage.label(dark)
    if n == 0:
        return dark
    near = ndimage.binary_dilation(dist_brain <= cfg.csf_mm + 1.5 * spacing.max())
    touching = np.unique(labels[near & dark])
    layer = np.isin(labels, touching[touching > 0])
    bright = band & inner & deep & (data >= classes["marrow_split"])
    marrow = layer.copy()
    for _ in range(max(1, int(round(cfg.diploe_max_mm / spacing.min())))):
        grown = ndimage.binary_dilation(marrow) & bright
        if not np.any(grown & ~marrow):
            break
        marrow |= grown
    skull = ndimage.binary_closing(layer | marrow) & band & inner
    labels, n = ndimage.label(skull)
    if n > 1:  # keep the shell, not specks
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        skull = np.isin(labels, np.flatnonzero(sizes >= 0.01 * sizes.max()))
    return skull
