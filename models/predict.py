"""Inference: load a run once, predict normalised fields for windows or for a CT + placement.

``Predictor.from_run(run_dir)`` reads ``config.json`` and ``best.safetensors`` (no pickles).
``predict_window(ct_hu, points_vox)`` returns P̂ = log(1 + p/max p) on the window grid.
``predict_from_ct`` rebuilds the simulation window with ``sim.window.make_window`` and the run's stored
simulation config, predicts, and writes ``pressure_pred.nii.gz`` + ``summary.json``.

Pressure in pascals (runs with a pressure head, ``RUN/peak/``: :mod:`models.peak`): the summary also carries
``peak_pressure_pa`` (the field's maximum: ``pressure_pa.nii.gz`` = (exp(P̂) − 1) scaled to that maximum),
``focal_pressure_pa`` (the intracranial focus), ``mechanical_index`` (from the peak: conservative) and
``mechanical_index_focal``, for the training data's source amplitude (pressures scale linearly with it).

Focal volume definition: the −6 dB volume of the predicted *linear* field p/pmax = exp(P̂) − 1, i.e. the
number of voxels with exp(P̂) − 1 ≥ 0.5 · max(exp(P̂) − 1), times the voxel volume |det A[:3, :3]| (mm³).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tfus.models import checkpoint
from tfus.models.config import ModelConfig
from tfus.models.data import (beam_template, encode_transducer, normalise_ct, prior_channel, store_spacing_mm,
                              subsample_points)
from tfus.models.metrics import focal_mask_6db, focal_point_vox
from tfus.models.network import DeepTFUS
from tfus.models.peak import PeakModel, mechanical_index, peak_inputs


class Predictor:
    """A trained model ready for inference (eval mode, on ``device``)."""

    def __init__(self, model: DeepTFUS, run_config: dict, device: torch.device, peak: PeakModel | None = None):
        self.model, self.run_config, self.device = model.eval(), run_config, device
        self.peak = peak  # the pressure head (None: normalised fields only)
        self.config: ModelConfig = model.config
        self.sim_config: dict | None = run_config.get("sim_config")
        self.window_shape = tuple(run_config.get("window_shape") or ()) or None
        self.model_id = run_config.get("model_id", self.config.name)
        self.config_hash = run_config.get("config_hash", "")
        self._template = None
        if self.config.prior:  # the beam a prior network corrects: built at load, not on the first request
            self._template = self.template

    @property
    def template(self):
        """The transducer's free-field table (``sim.beam_prior``) for the run's window (a Rayleigh table,
        seconds, built once)."""
        if self._template is None:
            shape = self.window_shape or tuple((self.sim_config or {}).get("window_shape") or ())
            self._template = beam_template(self.sim_config, shape, self.spacing_mm)
        return self._template

    @property
    def spacing_mm(self) -> float:
        """The run's grid spacing (mm): the dataset's, else its simulation config's."""
        spacing = self.run_config.get("spacing_mm") or (self.sim_config or {}).get("spacing_mm")
        return store_spacing_mm(spacing)

    def free_field_pa(self, points_vox: np.ndarray, shape) -> np.ndarray:
        """The transducer's free field in water (Pa, ``shape``) at the pose of ``points_vox`` (window voxels)."""
        from tfus.sim.beam_prior import free_field_prior  # noqa: PLC0415
        return free_field_prior(self.template, points_vox, tuple(shape), self.spacing_mm)

    def _prior(self, points_vox: list, shape) -> torch.Tensor | None:
        """(N, 1, X, Y, Z) free-field priors of the placements, or None for a model without one."""
        if not self.config.prior:
            return None
        return torch.from_numpy(np.stack([prior_channel(self.template, p, shape, self.spacing_mm)
                                          for p in points_vox])[:, None]).to(self.device)

    @classmethod
    def from_run(cls, run_dir, device: str = "auto") -> "Predictor":
        run = Path(run_dir)
        if not (run / "config.json").is_file():
            raise FileNotFoundError(f"no trained model in {run}: config.json missing")
        try:
            run_config = json.loads((run / "config.json").read_text())
            model_config = ModelConfig.from_dict(run_config["model"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{run / 'config.json'} is not a tfus run config: {exc}") from exc
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device))
        model = DeepTFUS(model_config)
        checkpoint.load_weights(model, run / "best.safetensors")
        return cls(model.to(dev), run_config, dev, PeakModel.from_run(run, dev))

    def _check(self, ct_hu: np.ndarray, points_vox: np.ndarray) -> None:
        if ct_hu.ndim != 3:
            raise ValueError(f"CT window must be 3-D (X, Y, Z), got shape {ct_hu.shape}")
        if self.window_shape and tuple(ct_hu.shape) != self.window_shape:
            raise ValueError(f"CT window shape {ct_hu.shape} differs from the model's training window "
                             f"{self.window_shape}")
        if any(n % self.config.divisor for n in ct_hu.shape):
            raise ValueError(f"CT window shape {ct_hu.shape} must be divisible by {self.config.divisor}")
        if not np.isfinite(ct_hu).all():
            raise ValueError("CT window has non-finite values")

    @torch.no_grad()
    def predict_window(self, ct_hu: np.ndarray, points_vox: np.ndarray, drive=None) -> np.ndarray:
        """(X, Y, Z) HU window + (P, 3) transducer points in window voxels (+ their (P, 3) ring drive; None: a
        single in-phase bowl) → (X, Y, Z) float32 normalised field."""
        ct_hu = np.asarray(ct_hu, dtype=np.float32)
        self._check(ct_hu, points_vox)
        points = subsample_points(encode_transducer(points_vox, drive, ct_hu.shape), self.config.n_points)
        ct = torch.from_numpy(normalise_ct(ct_hu)[None, None]).to(self.device)
        pts = torch.from_numpy(points[None]).to(self.device)
        prior = self._prior([points_vox], ct_hu.shape)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(ct, pts, prior)
        return out[0, 0].float().cpu().numpy()

    @torch.no_grad()
    def predict_windows(self, ct_hu: np.ndarray, points_vox: list, drives: list, batch_size: int = 8) -> np.ndarray:
        """One CT window, many transducers (a skull-fixed grid): (N, X, Y, Z) normalised fields, batched."""
        ct_hu = np.asarray(ct_hu, dtype=np.float32)
        for pts in points_vox:
            self._check(ct_hu, pts)
        ct = torch.from_numpy(normalise_ct(ct_hu)[None, None]).to(self.device)
        out = []
        for i in range(0, len(points_vox), batch_size):
            chunk = [subsample_points(encode_transducer(p, d, ct_hu.shape), self.config.n_points)
                     for p, d in zip(points_vox[i:i + batch_size], drives[i:i + batch_size])]
            pts = torch.from_numpy(np.stack(chunk)).to(self.device)
            prior = self._prior(points_vox[i:i + batch_size], ct_hu.shape)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                y = self.model(ct.expand(len(chunk), -1, -1, -1, -1), pts, prior)
            out.append(y[:, 0].float().cpu().numpy())
        return np.concatenate(out)

    def predict_peaks(self, ct_hu: np.ndarray, points_vox: list) -> np.ndarray:
        """(N, 2) predicted pressures in Pa (field maximum, intracranial focus) of placements on one window."""
        if self.peak is None:
            raise ValueError("the model has no pressure head (RUN/peak); add one with "
                             "`tfus train-peak --model RUN --store STORE`")
        return self.peak.predict_inputs(np.stack([peak_inputs(ct_hu, p) for p in points_vox]))

    @property
    def frequency_hz(self) -> float | None:
        return (self.sim_config or {}).get("transducer", {}).get("frequency_hz")


def pressure_field_pa(field: np.ndarray, peak_pressure_pa: float) -> np.ndarray:
    """Normalised field log(1 + p/max p) → pressure amplitude in Pa whose maximum is ``peak_pressure_pa``."""
    linear = np.maximum(np.expm1(np.asarray(field, dtype=np.float32)), 0.0)  # below 0: no pressure, not negative
    top = float(linear.max())
    if top <= 0:
        raise ValueError("the predicted field is zero everywhere; cannot scale it to pascals")
    # a network's maximum is only close to ln 2: scale so that the field's maximum is the predicted peak
    return (linear * np.float32(peak_pressure_pa / top)).astype(np.float32)


def pressure_summary(peaks_pa, frequency_hz: float, source_amplitude_pa: float | None) -> dict:
    peak, focal = float(peaks_pa[0]), float(peaks_pa[1])
    return {"peak_pressure_pa": peak, "focal_pressure_pa": focal,
            "mechanical_index": mechanical_index(peak, frequency_hz),
            "mechanical_index_focal": mechanical_index(focal, frequency_hz),
            "source_amplitude_pa": source_amplitude_pa,
            "pressure_definition": "peak: the field's maximum (scales pressure_pa.nii.gz); focal: the intracranial "
                                   "focus; MI = p[MPa]/sqrt(f[MHz]); linear in the source amplitude"}


def field_summary(field: np.ndarray, affine: np.ndarray) -> dict:
    """Focal point (world mm), −6 dB focal volume (mm³, linear field) and peak of a normalised field."""
    focus = focal_point_vox(field)
    world = affine[:3, :3] @ focus + affine[:3, 3]
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    return {"focal_point_mm": [float(v) for v in world], "focal_point_vox": [int(v) for v in focus],
            "focal_volume_mm3": float(focal_mask_6db(field).sum() * voxel_mm3),
            "peak_normalised": float(field.max())}


def write_outputs(out: Path, volumes: dict, affine: np.ndarray, summary: dict, name: str = "summary.json") -> None:
    """Write NIfTI ``volumes`` ({file name: array}) and the JSON summary into a temporary sibling directory,
    then move them into ``out`` (nothing half-written; the summary last)."""
    import nibabel as nib
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-predict-", dir=out.parent))
    try:
        for fname, array in volumes.items():
            nib.save(nib.Nifti1Image(np.asarray(array, np.float32), affine), str(tmp / fname))
        (tmp / name).write_text(json.dumps(summary, indent=2))
        for fname in [*volumes, name]:
            os.replace(tmp / fname, out / fname)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def predict_from_ct(predictor: Predictor, ct, position_mm, target_mm, out_dir) -> dict:
    """Predict the field of a transducer at ``position_mm`` aimed at ``target_mm`` (world mm) on ``ct``.

    ``ct``: a path (NIfTI, …) or a ``sim.Volume``. Returns the summary also written to ``summary.json``.
    """
    from tfus.sim.config import SimConfig
    from tfus.sim.window import make_window
    if not predictor.sim_config:
        raise ValueError("the run has no stored sim_config; cannot rebuild the simulation window")
    sim_config = SimConfig.from_dict(predictor.sim_config)
    window = make_window(ct, tuple(position_mm), tuple(target_mm), sim_config)
    t0 = time.perf_counter()
    field = predictor.predict_window(window.ct_hu, window.transducer_points_vox, window.transducer_drive)
    inference_s = time.perf_counter() - t0
    affine = np.asarray(window.affine, dtype=np.float64)
    out = Path(out_dir)
    summary = {**field_summary(field, affine), "inference_s": inference_s, "model_id": predictor.model_id,
               "config_hash": predictor.config_hash, "position_mm": [float(v) for v in position_mm],
               "target_mm": [float(v) for v in target_mm], "grid_shape": list(field.shape),
               "focal_volume_definition": "-6 dB of p/pmax = exp(P)-1 (linear amplitude)",
               "pressure_path": str(out / "pressure_pred.nii.gz")}
    volumes = {"pressure_pred.nii.gz": field}
    if predictor.peak is not None:
        peaks = predictor.predict_peaks(window.ct_hu, [window.transducer_points_vox])[0]
        summary.update(pressure_summary(peaks, sim_config.transducer.frequency_hz, sim_config.transducer.amplitude_pa))
        volumes["pressure_pa.nii.gz"] = pressure_field_pa(field, peaks[0])
        summary["pressure_pa_path"] = str(out / "pressure_pa.nii.gz")
    write_outputs(out, volumes, affine, summary)
    return summary
