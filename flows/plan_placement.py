"""``plan-placement``: where to put the transducer to hit a target — candidates scored by the model in seconds.

1. Candidates: ``sim.placement.candidate_placements`` — scalp placements aimed at the target, within the
   transducer's reach and a tilt limit, on the model's simulation config (inside the subject's fixed window
   for a skull-fixed model).
2. Scoring: the model predicts every candidate's normalised field (batched: a skull-fixed grid shares one
   resampled CT) and its pressure head the field's maximum and the intracranial focal pressure in Pa; per
   candidate the **predicted pressure at the target** = the transducer's free field in water at the target
   (``sim.beam_prior``, exact physics for the pose) × the head's intracranial transmission T_focus = focal
   pressure / p_ref; beside it the predicted field's own value at the target (trilinear), the predicted
   intracranial focus (``sim.fieldstats`` search region) and its distance to the target, and the mechanical
   index. (Measured on held-out heads, docs/RESULTS.md: the field's value at an off-focus target ranks the
   candidates no better than chance; free field × transmission does.)
3. Ranking: by predicted pressure at the target (highest first); the focus distance is reported beside it.
4. ``verify`` K: the top K are simulated with the k-Wave solver on the same grid; rows then carry simulated
   pressure at the target and focus distance next to the predicted ones, and the plan's pick is the verified
   candidate with the highest *simulated* pressure at the target (the model shortlists, the solver decides;
   without verification the pick is the model's first).

Outputs (``out_dir``): ``ranking.csv``, ``plan.json`` (request, timings, the pick, the rows), ``pick_pressure_pa.nii.gz``
(the pick's predicted field in Pa) and ``ranking.png`` (candidates over the head, coloured by predicted pressure).
The Prefect flow ``plan-placement`` (deployment ``plan-placement/default``, registered by ``tfus serve``)
publishes the ranking as a table artifact. Bad input: one clear ``ValueError``/``FileNotFoundError`` line.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import flow

from tfus.flows import serving

log = logging.getLogger(__name__)

RANKING_ARTIFACT_KEY = "placement-ranking"
PLAN_ARTIFACT_KEY = "placement-plan"
DEFAULT_CANDIDATES = 32
COLUMNS = ("rank", "position_mm", "target_mm", "scalp_mm", "tilt_deg", "pressure_at_target_pa",
           "free_field_at_target_pa", "field_pressure_at_target_pa", "focus_distance_mm", "focal_point_mm",
           "focal_pressure_pa", "peak_pressure_pa", "mechanical_index", "sim_pressure_at_target_pa",
           "sim_focus_distance_mm", "sim_focal_pressure_pa", "sim_runtime_s")


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class PlanRequest:
    """A placement search: CT, world target (mm), model run, how many candidates and verifications."""

    ct: str
    target_mm: tuple[float, float, float]
    model: str | None = None
    candidates: int = DEFAULT_CANDIDATES
    verify: int = 0
    seed: int = 0
    max_tilt_deg: float = 20.0
    frequency_hz: float | None = None        # refuse a model trained at another frequency
    window_shape: tuple[int, int, int] | None = None  # refuse a model trained on another window
    out_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.ct:
            raise ValueError("`ct` (a CT path) is required")
        try:
            target = tuple(float(v) for v in self.target_mm)
        except (TypeError, ValueError):
            raise ValueError(f"`target_mm` must be three numbers (x, y, z) in mm, got {self.target_mm!r}") from None
        if len(target) != 3 or not all(math.isfinite(v) for v in target):
            raise ValueError(f"`target_mm` must be three finite numbers (x, y, z) in mm, got {self.target_mm!r}")
        object.__setattr__(self, "target_mm", target)
        object.__setattr__(self, "candidates", _int(self.candidates, "candidates", 1))
        object.__setattr__(self, "verify", _int(self.verify, "verify", 0))
        object.__setattr__(self, "seed", _int(self.seed, "seed", 0))
        if self.verify > self.candidates:
            raise ValueError(f"`verify` ({self.verify}) exceeds `candidates` ({self.candidates})")
        if not 0 < float(self.max_tilt_deg) <= 90:
            raise ValueError(f"`max_tilt_deg` must be in (0, 90], got {self.max_tilt_deg}")
        if self.frequency_hz is not None and not (float(self.frequency_hz) > 0):
            raise ValueError(f"`frequency_hz` must be positive, got {self.frequency_hz}")
        if self.window_shape is not None:
            object.__setattr__(self, "window_shape", tuple(int(n) for n in self.window_shape))


def check_model(predictor, request: PlanRequest, run: str) -> None:
    """The model can answer this request (pressure head, simulation config, frequency, window) or one line why."""
    if predictor.peak is None:
        raise ValueError(f"model {run} has no pressure head (peak/): add one with "
                         f"`tfus train-peak --model {run} --store STORE`")
    if not predictor.sim_config:
        raise ValueError(f"model {run} has no stored sim_config; cannot rebuild its simulation grid")
    f_model = predictor.frequency_hz
    if request.frequency_hz is not None and abs(float(request.frequency_hz) - f_model) > 1e-6 * f_model:
        raise ValueError(f"model {run} was trained at {f_model / 1e3:g} kHz, not the {request.frequency_hz / 1e3:g} "
                         "kHz asked; use a model trained at that frequency")
    if request.window_shape is not None and predictor.window_shape and \
            tuple(request.window_shape) != tuple(predictor.window_shape):
        raise ValueError(f"model {run} was trained on {tuple(predictor.window_shape)} windows, not the "
                         f"{tuple(request.window_shape)} asked")


def _at(field: np.ndarray, vox: np.ndarray) -> float:
    from scipy.ndimage import map_coordinates  # noqa: PLC0415

    return float(map_coordinates(field, np.asarray(vox, float).reshape(3, 1), order=1, mode="nearest")[0])


def _focus(pressure: np.ndarray, window, config) -> tuple[np.ndarray, float]:
    """(world mm, Pa) of the intracranial maximum of a field on ``window`` (``sim.fieldstats`` region)."""
    from tfus.sim.fieldstats import focal_search_mask  # noqa: PLC0415

    skull = window.ct_hu > config.medium.skull_threshold_hu
    mask = focal_search_mask(pressure.shape, window.affine, window.bowl, config.transducer.frequency_hz, skull)
    if not mask.any():
        mask = np.ones(pressure.shape, bool)
    idx = np.unravel_index(int(np.argmax(np.where(mask, pressure, -np.inf))), pressure.shape)
    return window.voxel_to_world(np.asarray(idx, float)[None])[0], float(pressure[idx])


def _windows(volume, placements, config):
    from tfus.sim.window import make_window, move_transducer  # noqa: PLC0415

    first = make_window(volume, placements[0].position_mm, placements[0].target_mm, config)
    if config.grid != "subject":
        return [first] + [make_window(volume, p.position_mm, p.target_mm, config) for p in placements[1:]]
    return [first] + [move_transducer(first, p.position_mm, p.target_mm, config) for p in placements[1:]]


def _tilt_deg(p) -> float | None:
    if p.scalp_mm is None:
        return None
    axis = np.subtract(p.target_mm, p.position_mm)
    inward = np.subtract(p.scalp_mm, p.position_mm)  # the apex sits on the outward normal of the scalp point
    cos = float(axis @ inward) / (np.linalg.norm(axis) * np.linalg.norm(inward) + 1e-12)
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def score_candidates(predictor, volume, target_mm, config, candidates: int, seed: int = 0,
                     max_tilt_deg: float = 20.0) -> tuple[list[dict], list, list, dict]:
    """(rows ranked by predicted pressure at the target, windows, predicted Pa fields (in rank order), timings)."""
    from tfus.models.predict import pressure_field_pa  # noqa: PLC0415
    from tfus.sim.placement import candidate_placements  # noqa: PLC0415

    t0 = time.perf_counter()
    placements = candidate_placements(volume, target_mm, candidates, config, seed=seed, max_tilt_deg=max_tilt_deg)
    windows = _windows(volume, placements, config)
    t1 = time.perf_counter()
    if config.grid == "subject":
        fields = predictor.predict_windows(windows[0].ct_hu, [w.transducer_points_vox for w in windows],
                                           [w.transducer_drive for w in windows])
        peaks = predictor.predict_peaks(windows[0].ct_hu, [w.transducer_points_vox for w in windows])
    else:
        fields = np.stack([predictor.predict_window(w.ct_hu, w.transducer_points_vox, w.transducer_drive)
                           for w in windows])
        peaks = np.concatenate([predictor.predict_peaks(w.ct_hu, [w.transducer_points_vox]) for w in windows])
    t2 = time.perf_counter()
    target = np.asarray(target_mm, float)
    f = config.transducer.frequency_hz
    rows, pressures = [], []
    p_ref = predictor.peak.p_ref_pa
    for p, w, field, (peak, focal) in zip(placements, windows, fields, peaks):
        pa = pressure_field_pa(field, peak)
        focus_mm, _ = _focus(pa, w, config)
        pressures.append(pa)
        at = w.world_to_voxel(target[None])[0]
        free = _at(predictor.free_field_pa(w.transducer_points_vox, w.shape), at)
        rows.append({"position_mm": list(p.position_mm), "target_mm": list(p.target_mm),
                     "scalp_mm": list(p.scalp_mm) if p.scalp_mm else None, "tilt_deg": _tilt_deg(p),
                     # the ranked estimate: the free field at the target × the head's intracranial transmission
                     "pressure_at_target_pa": free * float(focal) / p_ref,
                     "free_field_at_target_pa": free, "field_pressure_at_target_pa": _at(pa, at),
                     "focus_distance_mm": float(np.linalg.norm(focus_mm - target)),
                     "focal_point_mm": [float(v) for v in focus_mm], "focal_pressure_pa": float(focal),
                     "peak_pressure_pa": float(peak), "mechanical_index": float(peak) / 1e6 / math.sqrt(f / 1e6)})
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["pressure_at_target_pa"], rows[i]["focus_distance_mm"]))
    ranked = []
    for rank, i in enumerate(order, start=1):
        ranked.append({"rank": rank, **rows[i]})
    timings = {"candidates_s": t1 - t0, "scoring_s": time.perf_counter() - t1, "inference_s": t2 - t1,
               "per_candidate_inference_s": (t2 - t1) / len(rows)}
    return ranked, [windows[i] for i in order], [pressures[i] for i in order], timings


def verify_rows(rows: list[dict], windows: list, config, k: int, progress: bool = False) -> float:
    """Simulate the first ``k`` ranked rows with the k-Wave solver; fills their ``sim_*`` columns; returns s."""
    from tfus.sim.simulation import simulate_window  # noqa: PLC0415

    t0 = time.perf_counter()
    for row, window in zip(rows[:k], windows[:k]):
        result = simulate_window(window, config, {"ct": "<plan-placement candidate>", "position_mm": row["position_mm"],
                                                  "target_mm": row["target_mm"], "crop_mm": None, "device": "cpu",
                                                  "kwave_binary": None}, progress=progress)
        target = np.asarray(row["target_mm"], float)
        focus_mm, focal = _focus(result.pressure_pa, window, config)
        row.update({"sim_pressure_at_target_pa": _at(result.pressure_pa, window.world_to_voxel(target[None])[0]),
                    "sim_focus_distance_mm": float(np.linalg.norm(focus_mm - target)),
                    "sim_focal_pressure_pa": focal, "sim_runtime_s": float(result.summary.get("runtime_s", 0.0))})
    return time.perf_counter() - t0


def choose_pick(rows: list[dict], verified: int) -> int:
    """Index of the plan's pick: among the ``verified`` first rows the highest simulated pressure at the target,
    else the model's first."""
    done = [i for i, r in enumerate(rows[:verified]) if r.get("sim_pressure_at_target_pa") is not None]
    return max(done, key=lambda i: rows[i]["sim_pressure_at_target_pa"]) if done else 0


def write_csv(path: Path, rows: list[dict]) -> None:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, list):
            return " ".join(f"{x:.2f}" for x in v)
        return f"{v:.6g}" if isinstance(v, float) else str(v)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow([cell(row.get(c)) for c in COLUMNS])


def plot_ranking(path: Path, volume, rows: list[dict], target_mm) -> None:
    """Top view of the candidates on the head: apex positions coloured by predicted pressure at the target."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    pos = np.array([r["position_mm"] for r in rows])
    kpa = np.array([r["pressure_at_target_pa"] for r in rows]) / 1e3
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    corners = volume.corners_mm()
    lo, hi = corners.min(0), corners.max(0)
    t = np.asarray(target_mm, float)
    span = max(float(np.abs(pos - t).max()) + 15.0, 40.0)
    m = np.asarray(volume.affine)[:3, :3]
    axis_aligned = np.allclose(m, np.diag(np.diag(m)))
    for ax, (a, b), name in zip(axes, ((0, 1), (0, 2)), ("axial slice through the target (x-y)",
                                                         "coronal slice through the target (x-z)")):
        if axis_aligned:  # the CT slice through the target as the background (voxel axes = world axes)
            vox = np.clip(np.rint(volume.world_to_voxel(t[None])[0]).astype(int), 0, np.asarray(volume.shape) - 1)
            c = 3 - a - b
            sl = np.take(volume.hu, vox[c], axis=c)
            if m[a, a] < 0:
                sl = np.flip(sl, 0)
            if m[b, b] < 0:
                sl = np.flip(sl, 1)
            ax.imshow(sl.T, origin="lower", extent=(lo[a], hi[a], lo[b], hi[b]), cmap="gray", vmin=-200, vmax=2000)
        ax.set_xlim(t[a] - span, t[a] + span)
        ax.set_ylim(t[b] - span, t[b] + span)
        sc = ax.scatter(pos[:, a], pos[:, b], c=kpa, cmap="viridis", s=30, edgecolors="k", linewidths=0.3)
        ax.scatter([pos[0, a]], [pos[0, b]], marker="*", s=250, c="red", label="model's pick")
        ax.scatter([target_mm[a]], [target_mm[b]], marker="x", s=80, c="white", label="target")
        ax.set_title(name)
        ax.set_xlabel("xyz"[a] + " (mm)")
        ax.set_ylabel("xyz"[b] + " (mm)")
    fig.colorbar(sc, ax=axes, label="predicted pressure at target (kPa)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plan(request: PlanRequest, default_name: str | None = None, progress: bool = False, predictor=None,
         confined: bool = False) -> dict:
    """Run a placement search (module docstring); returns the JSON-serialisable summary (also ``plan.json``).

    ``confined``: ``out_dir`` must lie under the serving output root (the deployment); else it is used as given.
    """
    from tfus.models.predict import write_outputs  # noqa: PLC0415
    from tfus.sim.config import SimConfig  # noqa: PLC0415
    from tfus.sim.ingest import load_volume  # noqa: PLC0415

    from tfus.flows.predict import fetch_ct  # noqa: PLC0415

    t0 = time.perf_counter()
    run = request.model or serving.default_model()
    if not run:
        raise ValueError("no model: pass `model` (a run directory with a pressure head)")
    if predictor is None:
        predictor = serving.get_model(run).predictor
    check_model(predictor, request, run)
    config = SimConfig.from_dict(predictor.sim_config)
    name = default_name or f"plan-{uuid.uuid4().hex[:12]}"
    out = serving.confine(request.out_dir, name) if confined else Path(request.out_dir or name)
    with tempfile.TemporaryDirectory(prefix="tfus-ct-") as scratch:
        volume = load_volume(fetch_ct(request.ct, Path(scratch)))
    rows, windows, pressures, timings = score_candidates(predictor, volume, request.target_mm, config,
                                                         request.candidates, request.seed, request.max_tilt_deg)
    verify_s = verify_rows(rows, windows, config, request.verify, progress) if request.verify else 0.0
    per_sim = (sum(r["sim_runtime_s"] for r in rows[:request.verify]) / request.verify) if request.verify else None
    pick = choose_pick(rows, request.verify)
    summary = {
        "ct": request.ct, "target_mm": list(request.target_mm), "model_dir": str(run),
        "model_id": predictor.model_id, "frequency_hz": predictor.frequency_hz, "grid": config.grid,
        "window_shape": list(windows[0].shape), "n_candidates": len(rows), "n_asked": request.candidates,
        "verified": request.verify, "ranked_by": "predicted pressure at the target (Pa), highest first",
        "picked_by": ("the highest simulated pressure at the target among the verified candidates" if request.verify
                      else "the model's ranking (no candidate verified)"),
        "source_amplitude_pa": config.transducer.amplitude_pa,
        "timings_s": {**timings, "verify_s": verify_s, "total_s": time.perf_counter() - t0,
                      "per_simulation_s": per_sim},
        "pick": rows[pick], "model_pick": rows[0], "rows": rows, "out_dir": str(out)}
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "ranking.csv", rows)
    plot_ranking(out / "ranking.png", volume, rows, request.target_mm)
    write_outputs(out, {"pick_pressure_pa.nii.gz": pressures[pick]}, windows[pick].affine, summary, name="plan.json")
    return summary


def table_rows(rows: list[dict]) -> list[dict]:
    """Rows for the Prefect table artifact (flat, rounded, kPa)."""
    out = []
    for r in rows:
        row = {"rank": r["rank"], "position_mm": " ".join(f"{v:.1f}" for v in r["position_mm"]),
               "tilt_deg": round(r["tilt_deg"], 1) if r.get("tilt_deg") is not None else None,
               "pred_kpa_at_target": round(r["pressure_at_target_pa"] / 1e3, 2),
               "free_field_kpa_at_target": round(r["free_field_at_target_pa"] / 1e3, 2),
               "pred_focus_distance_mm": round(r["focus_distance_mm"], 2), "mi": round(r["mechanical_index"], 3)}
        if r.get("sim_pressure_at_target_pa") is not None:
            row.update({"sim_kpa_at_target": round(r["sim_pressure_at_target_pa"] / 1e3, 2),
                        "sim_focus_distance_mm": round(r["sim_focus_distance_mm"], 2)})
        out.append(row)
    return out


def _run_name() -> str | None:
    from prefect.runtime import flow_run  # noqa: PLC0415

    return f"plan-{flow_run.id}" if flow_run.id else None


@flow(name="plan-placement", persist_result=False, log_prints=False)
def plan_placement(ct: str, target_mm: list[float], model: str | None = None, candidates: int = DEFAULT_CANDIDATES,
                   verify: int = 0, seed: int = 0, max_tilt_deg: float = 20.0, frequency_hz: float | None = None,
                   out_dir: str | None = None) -> dict:
    """Rank ``candidates`` scalp placements for ``target_mm`` (world mm) on ``ct`` by the model's predicted
    pressure at the target; simulate the top ``verify``. Publishes the ranking as a table artifact."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: PLC0415

    from tfus.flows.predict import summary_markdown  # noqa: PLC0415

    request = PlanRequest(ct=ct, target_mm=target_mm, model=model, candidates=candidates, verify=verify, seed=seed,
                          max_tilt_deg=max_tilt_deg, frequency_hz=frequency_hz, out_dir=out_dir)
    summary = plan(request, default_name=_run_name(), confined=True)
    create_table_artifact(table_rows(summary["rows"]), key=RANKING_ARTIFACT_KEY,
                          description=f"placements for target {summary['target_mm']} mm, ranked by predicted "
                                      "pressure at the target")
    brief = {k: v for k, v in summary.items() if k != "rows"}
    create_markdown_artifact(summary_markdown(brief), key=PLAN_ARTIFACT_KEY, description="placement plan (JSON)")
    return brief
