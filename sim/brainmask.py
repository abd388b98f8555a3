"""The intracranial seed of a T1 without a brain mask: the Colin27 template, registered with SimpleITK.

Colin27 (Holmes et al. 1998, J. Comput. Assist. Tomogr. 22:324; 27 averaged T1 scans of one adult, 1 mm,
MNI space) and its brain-extracted copy ship in Debian's ``mricron-data`` package (BSD-3-clause) as
``/usr/share/mricron/templates/ch2.nii.gz`` and ``ch2bet.nii.gz``. Nothing is downloaded: where the package
is missing the error says how to install it (or to pass a brain mask). ``TFUS_TEMPLATE_DIR`` points
elsewhere (a site that keeps templates on a shared disk).

Registration: an affine transform (12 parameters) from the template's head to the subject's, Mattes mutual
information (intensity scales of different scanners need not match), on a 4 mm → 2 mm pyramid, regular
sampling with a fixed seed (deterministic). The template's brain mask is carried over with nearest-neighbour
interpolation. An affine map places the brain to within a few millimetres; the pseudo-CT then only uses it
as the seed from which the dark skull layer is found in the subject's own image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfus.sim.ingest import Volume, load_volume, to_sitk

DEBIAN_TEMPLATE_DIR = Path("/usr/share/mricron/templates")
TEMPLATE_T1, TEMPLATE_BRAIN = "ch2.nii.gz", "ch2bet.nii.gz"


def template_dir() -> Path:
    return Path(os.environ.get("TFUS_TEMPLATE_DIR", DEBIAN_TEMPLATE_DIR))


def colin27_paths() -> tuple[Path, Path]:
    """(T1, brain-extracted T1) of Colin27; ``FileNotFoundError`` saying how to get them."""
    base = template_dir()
    paths = base / TEMPLATE_T1, base / TEMPLATE_BRAIN
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"Colin27 template not found ({missing[0]}): install the Debian package mricron-data "
            "(apt-get install mricron-data; `make setup` does it), set TFUS_TEMPLATE_DIR, or pass --brain-mask")
    return paths


def load_colin27() -> tuple[Volume, np.ndarray]:
    """The Colin27 T1 as a :class:`Volume` (intensities in ``hu``) and its brain mask (bool, same grid)."""
    t1_path, bet_path = colin27_paths()
    t1, bet = load_volume(t1_path), load_volume(bet_path)
    return t1, bet.hu > 0


def register_brain_mask(t1: Volume, seed: int = 7) -> np.ndarray:
    """The template's brain mask on ``t1``'s grid (bool (X, Y, Z)) after an affine registration."""
    import SimpleITK as sitk  # noqa: PLC0415

    template, brain = load_colin27()
    fixed = sitk.Cast(to_sitk(_unit(t1.hu), t1.affine), sitk.sitkFloat32)
    moving = sitk.Cast(to_sitk(_unit(template.hu), template.affine), sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(0.25, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=150,
                                                 gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    transform = reg.Execute(fixed, moving)
    mask = to_sitk(brain.astype(np.uint8), template.affine)
    out = sitk.Resample(mask, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0) > 0


def _unit(data: np.ndarray) -> np.ndarray:
    """Intensities scaled to [0, 1] by the 99.5th percentile (only to condition the optimiser)."""
    top = float(np.percentile(data, 99.5)) or 1.0
    return np.clip(np.asarray(data, np.float32) / top, 0, 1.5)
