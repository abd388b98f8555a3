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
   ``diploe_max_mm``), minus a ``csf_mm`` rim around the brain, closed by one voxel.
   **Inner table by tissue order** (the nesting brain → CSF → inner table → diploë → outer table → scalp that
   MR skull segmentation relies on, Dogdas et al. 2005): cortical bone gives almost no T1 signal, while CSF and
   red-marrow diploë are dark but not void. Where the dark skull voxels split into two classes (Otsu on this
   image's dark skull voxels; each class ≥ 10 % of them, medians ≥ 1.5× apart), the brighter ones lying between
   the brain and the nearest signal-void voxel (under the inner table) and connected to the intracranial space
   are CSF and join it; the brighter ones beyond the inner table are diploë (trabecular). Where the image shows
   no such split (other contrast, heavy smoothing), the skull stays as above. On Colin27 (1 mm) this moves 97 mL
   of CSF out of the bone (vault thickness median 7.0 → 5.75 mm, 95th percentile 13.5 → 9.8 mm); with the edge
   voxels cortical (step 5), 16 % of the bone is trabecular instead of 6 %.
5. **HU**: skull voxels that are signal-void (dark, where step 4 found no split), or touch the scalp or the
   intracranial space, are cortical (the BabelBrain rule "in contact with skin and brain is cortical"); the
   others inside (bright marrow, step 4's diploë) are trabecular.
   Their acoustic properties are those of BabelBrain's T1-only ("simple skull mask") mode: the longitudinal
   sound speeds that Pichardo, Sin & Hynynen 2011 (Phys. Med. Biol. 56:219; fresh-excised human skulls,
   270–836 kHz) fitted as linear in frequency — cortical 2416 + 120·f, trabecular 2063 + 282·f m/s (f in
   MHz; densities 1896.5 / 1738 kg/m³) — at the simulation's frequency (``frequency_hz``). Each class gets the
   HU that the HU → medium map of :mod:`sim.medium` turns into that sound speed (``medium.hu_for_sound_speed``:
   250 kHz → cortical 1183 HU / 2446 m/s, trabecular 792 HU / 2134 m/s; 500 kHz → 1220 / 880 HU). The map
   ties density to sound speed, so the density is the map's (1621 / 1416 kg/m³ at 250 kHz, 15–19 % below
   Pichardo's): on the analytic focused-bowl transmission through a flat plate 4–10 mm thick
   (:mod:`sim.layered`, 250 kHz, R 63.2 / D 64 mm), that raises the mean transmission by 8 % over Pichardo's
   own (ρ, c) (0.605 vs 0.558; ``benchmarks/skull_models_plate.py``). Sound speed, not density, was matched:
   it sets the critical angle and the plate resonance, and transcranial fields are most sensitive to it
   (Robertson et al. 2017, Phys. Med. Biol. 62:2559: within 4 % for an acceptable focal pressure). The ITRUSST benchmark's
   cortical bone (2800 m/s, 1850 kg/m³; Aubry et al. 2022, JASA 152:1003), which tfus used before, is a
   benchmark value at 500 kHz, not a T1 mapping, and faster than fresh cortical bone measured at 270 kHz.
   What either choice gives through Colin27: docs/VALIDATION.md. Explicit ``cortical_hu`` / ``trabecular_hu``
   override the derived values. Soft tissue 42 HU (the soft-tissue value of the ZTE/PETRA pseudo-CTs,
   Miscouridou et al. 2022, IEEE TUFFC 69:2896), air outside the head −1000 HU.

Limits of any T1-only skull: air (sinuses, mastoid cells) is as dark as bone and is labelled bone; the CSF/inner
table boundary is found only where the image separates signal-void bone from CSF (step 4), else it is the
assumed ``csf_mm`` rim. T1-derived pseudo-CTs carry skull errors of ~300–400 HU even with CNNs
(Yaakub et al. 2023, Brain Stimul. 16:75: 319 HU; Miscouridou 2022: 398 HU), which is why the quality
figures of :mod:`sim.skullqc` go with every pseudo-CT.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from tfus.sim.coupling import largest_component
from tfus.sim.ingest import Volume
from tfus.sim.medium import MediumConfig, hu_for_sound_speed

AIR_HU = -1000.0
# Pichardo, Sin & Hynynen 2011 (Phys. Med. Biol. 56:219) as tabulated by BabelBrain's T1-only mode:
# class -> (c at 0 Hz in m/s, dc/df in m/s per MHz, density kg/m³). Fitted over 270–836 kHz.
PICHARDO_2011 = {"cortical": (2416.0, 120.0, 1896.5), "trabecular": (2063.0, 282.0, 1738.0)}
PICHARDO_BAND_HZ = (100e3, 1e6)  # where tfus uses the fits (BabelBrain's 100–700 kHz, a little beyond 836 kHz)


def bone_sound_speed_m_s(bone: str, frequency_hz: float) -> float:
    """Pichardo 2011's longitudinal sound speed of ``bone`` ("cortical"/"trabecular") at ``frequency_hz``."""
    c0, slope, _ = PICHARDO_2011[bone]
    return c0 + slope * frequency_hz / 1e6


@dataclass(frozen=True)
class PseudoCTConfig:
    """Constants of the T1 → pseudo-CT method (module docstring); lengths in mm, values in HU, Hz.

    ``frequency_hz``: the frequency the pseudo-CT is made for (bone sound speeds are frequency-dependent);
    ``cortical_hu`` / ``trabecular_hu`` left ``None`` are derived from it (module docstring, step 5) and
    recorded in :meth:`to_dict`. HU values: sourced in the module docstring. The lengths are search limits of
    the segmentation, chosen around published anatomy, not fitted: ``max_skull_mm`` = 16 covers the thickest
    adult vault sites (occipital means up to 8.2 mm, Li et al. 2007; SD ~2.5 mm in a CT series of 100 adults,
    7.98 ± 2.47 mm; ~13 mm at +2 SD) plus CSF; ``diploe_max_mm`` = 5 is the diploë of a ~7 mm vault with
    ~1–2 mm tables; ``scalp_min_mm`` = 2 keeps the skin (and its partial-volume edge) out of the bone;
    ``csf_mm`` = 1 is the CSF rim assumed everywhere (the rest of the CSF is found from the image where it
    allows, module docstring step 4); before that step existed, 2 mm changed the Colin27 thickness by 0.5 mm
    and the simulated transmission by 4 % (docs/VALIDATION.md).
    """

    csf_mm: float = 1.0
    max_skull_mm: float = 16.0
    scalp_min_mm: float = 2.0
    diploe_max_mm: float = 5.0
    frequency_hz: float = 250e3
    cortical_hu: float | None = None
    trabecular_hu: float | None = None
    soft_tissue_hu: float = 42.0

    def __post_init__(self) -> None:
        for name in ("csf_mm", "scalp_min_mm", "diploe_max_mm"):
            if not 0 <= getattr(self, name) <= 10:
                raise ValueError(f"`{name}` must be in [0, 10] mm, got {getattr(self, name)}")
        if not 4 <= self.max_skull_mm <= 30:
            raise ValueError(f"`max_skull_mm` must be in [4, 30] mm, got {self.max_skull_mm}")
        lo, hi = PICHARDO_BAND_HZ
        derived = self.cortical_hu is None or self.trabecular_hu is None
        if derived and not (np.isfinite(self.frequency_hz) and lo <= self.frequency_hz <= hi):
            raise ValueError(f"`frequency_hz` {self.frequency_hz:g} is outside {lo / 1e3:g}–{hi / 1e3:g} kHz, where "
                             "tfus uses Pichardo 2011's bone sound speeds; give `cortical_hu` and `trabecular_hu`")
        for name, bone in (("cortical_hu", "cortical"), ("trabecular_hu", "trabecular")):
            if getattr(self, name) is None:  # frozen: fill the derived value once, so to_dict records it
                hu = hu_for_sound_speed(bone_sound_speed_m_s(bone, self.frequency_hz), MediumConfig())
                object.__setattr__(self, name, float(np.floor(hu + 0.5)))  # whole HU, as a CT stores them
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
    diploe = np.zeros_like(skull)
    void = _bone_void_split(t1.hu, skull, classes)
    if void is not None:  # the image separates signal-void bone from CSF / red marrow (module docstring, 4)
        classes["bone_void_split"] = void
        grey = skull & (t1.hu >= void) & (t1.hu < classes["bone_marrow_split"])  # CSF or red marrow
        csf = _csf_under_inner_table(skull & (t1.hu < void), grey, intracranial, spacing)
        skull, intracranial, diploe = skull & ~csf, intracranial | csf, grey & ~csf
    hu = np.full(t1.shape, AIR_HU, dtype=np.float32)
    hu[head] = cfg.soft_tissue_hu
    edge = skull & ndimage.binary_dilation(~skull & head)
    light = skull & ((t1.hu >= classes["bone_marrow_split"]) | diploe) & ~edge
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


def _bone_void_split(data: np.ndarray, skull: np.ndarray, classes: dict) -> float | None:
    """The T1 level between signal-void bone and the dark-but-not-void class (CSF, red marrow) of this image's
    dark skull voxels, or ``None`` where they do not form two classes (module docstring, step 4)."""
    values = data[skull & (data < classes["dark_split"])]
    if values.size < 1000:
        return None
    split = otsu_threshold(values)
    low, high = values[values < split], values[values >= split]
    if min(low.size, high.size) < 0.1 * values.size or not np.median(high) >= 1.5 * max(np.median(low), 1e-12):
        return None
    return split


def _csf_under_inner_table(bone, grey, intracranial, spacing) -> np.ndarray:
    """The ``grey`` (dark, not signal-void) skull voxels that are CSF: nearer the intracranial space (by over
    half a voxel) than the nearest signal-void ``bone`` voxel (the inner table), and connected to the
    intracranial space through such voxels."""
    if not bone.any() or not grey.any():
        return np.zeros_like(skull)
    d_in = ndimage.distance_transform_edt(~intracranial, sampling=spacing)
    _, nearest = ndimage.distance_transform_edt(~bone, sampling=spacing, return_indices=True)
    under = grey & (d_in < d_in[tuple(nearest)] - 0.5 * float(np.min(spacing)))  # under the inner table: a
    # half-voxel margin, so a diploë voxel beside a thin, partly imaged inner table is never taken for CSF
    return ndimage.binary_propagation(under & ndimage.binary_dilation(intracranial), mask=under)


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
