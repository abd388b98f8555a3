"""`make demo`: the whole service in miniature, driven the way a user drives it.

Each step runs a ``tfus`` command in a subprocess (exactly what the README shows), against one local
Prefect server that this function starts and stops: synthetic heads → dataset generation on a local Dask
cluster → query → training → evaluation against the free-field baseline → a prediction requested through
the flow API → ``report.md`` with figures. A second run reuses what is done: generation skips complete
samples, training resumes from its last checkpoint (a finished run is a no-op).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tfus.flows.runtime import local_prefect_server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in under 14 minutes on 2 cores (6 min 17 s idle, venv present)."""

    out_dir: Path = Path("demo")
    subjects: int = 4
    placements: int = 2
    preset: str = "demo"
    workers: int = 2
    model_config: str = "deeptfus-tiny"
    epochs: int = 30
    seed: int = 0
    prior: bool = True  # the network corrects the free-field beam (tfus train --prior)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.subjects < 3:
            raise ValueError(f"`subjects` must be >= 3 (one each for train/val/test), got {self.subjects}")
        if self.placements < 1:
            raise ValueError(f"`placements` must be >= 1, got {self.placements}")
        if self.workers < 1:
            raise ValueError(f"`workers` must be >= 1, got {self.workers}")
        if self.epochs < 1:
            raise ValueError(f"`epochs` must be >= 1, got {self.epochs}")

    @property
    def split_fractions(self) -> tuple[float, float, float]:
        """Subject-disjoint train/val/test fractions that leave at least one subject in val and test."""
        n = self.subjects
        held_out = max(1, round(0.15 * n)) / n
        return (1.0 - 2 * held_out, held_out, held_out)

    @property
    def store(self) -> Path:
        return self.out_dir / "dataset.zarr"

    @property
    def heads(self) -> Path:
        return self.out_dir / "heads"

    @property
    def run_dir(self) -> Path:
        return self.out_dir / "runs" / self.model_config

    @property
    def baseline_dir(self) -> Path:
        return self.out_dir / "runs" / "unet-plain"


class _Steps:
    """Numbered progress lines for people, plus the elapsed time of each step."""

    def __init__(self, total: int):
        self.total, self.n, self.t0 = total, 0, time.monotonic()
        self.times: dict[str, float] = {}

    def run(self, title: str, fn, *args):
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {title}", flush=True)
        t = time.monotonic()
        result = fn(*args)
        self.times[title] = time.monotonic() - t
        print(f"      done in {self.times[title]:.0f} s (total {time.monotonic() - self.t0:.0f} s)", flush=True)
        return result


def tfus(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    """Run a ``tfus`` command as a user would (same interpreter, same environment)."""
    cmd = [sys.executable, "-m", "tfus.flows.cli", *map(str, args)]
    print("      $ tfus " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=capture)
    if check and proc.returncode != 0:
        detail = (proc.stderr or "")[-2000:] if capture else ""
        raise RuntimeError(f"`tfus {' '.join(map(str, args))}` failed with exit code {proc.returncode}\n{detail}")
    return proc


def _make_heads(cfg: DemoConfig) -> list[Path]:
    cfg.heads.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(cfg.subjects):
        path = cfg.heads / f"subject-{i:02d}.nii.gz"
        if not path.exists():
            tfus("phantom", "--seed", cfg.seed + i, "--out", path)
        paths.append(path)
    print(f"      {len(paths)} synthetic heads in {cfg.heads}/")
    return paths


def _generate(cfg: DemoConfig) -> None:
    # A failed sample is reported by the flow (artifact + table) and gives a non-zero exit; the demo goes on
    # with the samples that completed, as a user would, and says so.
    proc = tfus("generate", "--subjects", str(cfg.heads / "*.nii.gz"), "--placements", cfg.placements,
                "--preset", cfg.preset, "--store", cfg.store, "--workers", cfg.workers, "--seed", cfg.seed,
                "--split", *cfg.split_fractions, check=False)
    if proc.returncode != 0:
        print(f"      warning: generation reported failures (exit {proc.returncode}); see `tfus stats {cfg.store}`")


REAL_HEAD = "ch2"  # Colin27's subject id (the T1's file name)


def _real_head(cfg: DemoConfig) -> dict | None:
    """Colin27 (Debian mricron-data): T1 → pseudo-CT task → simulations, in the test split of the same store."""
    from tfus.sim.brainmask import colin27_paths  # noqa: PLC0415

    try:
        t1 = colin27_paths()[0]
    except FileNotFoundError as exc:
        print(f"      skipped: {exc}")
        return None
    proc = tfus("generate", "--subjects-t1", t1, "--placements", cfg.placements, "--preset", cfg.preset,
                "--store", cfg.store, "--workers", cfg.workers, "--seed", cfg.seed, "--split", 0, 0, 1, check=False)
    rows = _rows(cfg, "--subject", REAL_HEAD)
    if proc.returncode != 0 or not rows:
        print(f"      warning: the real head gave {len(rows)} samples (exit {proc.returncode})")
        return rows[0] if rows else None
    qc = sorted(Path(str(cfg.store) + ".subjects").glob(f"{REAL_HEAD}-pct-*.qc.png"))
    row = rows[0]
    row["qc_png"] = str(qc[0]) if qc else None
    print(f"      Colin27: skull thickness median {row.get('skull_thickness_median_mm')} mm, "
          f"{len(rows)} samples simulated through its pseudo-CT")
    return row


def _rows(cfg: DemoConfig, *filters: str) -> list[dict]:
    out = tfus("query", cfg.store, *filters, "--json", capture=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]  # JSON lines


def _query(cfg: DemoConfig) -> dict:
    tfus("stats", cfg.store)
    tfus("query", cfg.store, "--split", "test")
    rows = [r for r in _rows(cfg, "--split", "test") if r.get("subject_id") != REAL_HEAD]
    if not rows:
        raise RuntimeError(f"no complete test samples in {cfg.store}; see `tfus stats {cfg.store}`")
    return rows[0]


def _train(cfg: DemoConfig) -> None:
    tfus("train", "--store", cfg.store, "--config", cfg.model_config, "--out", cfg.run_dir,
         "--epochs", cfg.epochs, *(["--prior"] if cfg.prior else []))


def _evaluate(cfg: DemoConfig) -> dict:
    out = cfg.out_dir / "evaluation"
    tfus("evaluate", "--model", cfg.run_dir, "--store", cfg.store, "--split", "test", "--out", out,
         "--free-field")
    return json.loads((out / "metrics.json").read_text())


def _pressure_and_plan(cfg: DemoConfig, sample: dict) -> dict:
    """`tfus train-peak` (pressure in Pa) and `tfus plan --optimize` for the held-out sample's target."""
    tfus("train-peak", "--model", cfg.run_dir, "--store", cfg.store, "--epochs", 30, "--no-progress")
    from tfus.flows.subjects import subject_id_for  # noqa: PLC0415

    stem = str(sample.get("subject_id") or "")
    head = next((p for p in sorted(cfg.heads.glob("*.nii.gz")) if subject_id_for(p) == stem), None)
    out = {"peak_metrics": json.loads((cfg.run_dir / "peak" / "metrics.json").read_text()), "plan": None}
    if head is None:
        print(f"      no head file for subject {stem!r}; placement search skipped")
        return out
    target = [f"{float(v):.2f}" for v in sample["target_mm"]]
    plan_dir = cfg.out_dir / "plan"
    tfus("plan", "--ct", head, "--target", *target, "--optimize", "--model", cfg.run_dir, "--candidates", 8,
         "--verify", 1, "--out", plan_dir)
    out["plan"] = json.loads((plan_dir / "plan.json").read_text())
    return out


def _plan_section(cfg: DemoConfig, result: dict | None) -> str:
    if not result:
        return ""
    rel = lambda p: os.path.relpath(p, cfg.out_dir)  # noqa: E731
    m = result["peak_metrics"]
    lines = ["## Pressure in pascals and a placement chosen by the model",
             "`tfus train-peak` added a pressure head to the run (transmission factors relative to the free field "
             "in water). On the held-out samples, relative error in Pa:", "",
             "| estimate | intracranial focal pressure | field maximum |", "|---|---|---|"]
    for name in ("pressure_head", "free_field_scaled"):
        if name in m:
            f, x = m[name]["focus_pressure_error_pct"], m[name]["max_pressure_error_pct"]
            lines.append(f"| {name} | {f['mean']:.1f} % | {x['mean']:.1f} % |")
    plan = result.get("plan")
    if plan:
        lines += ["", f"`tfus plan --optimize` for the target {plan['target_mm']} mm of that sample: "
                  f"{plan['n_candidates']} candidates scored in {plan['timings_s']['scoring_s']:.1f} s, the top one "
                  "simulated (`--verify 1`):", "",
                  "| rank | apex (mm) | tilt (°) | predicted kPa at target | simulated kPa at target |", "|---|---|---|---|---|"]
        for r in plan["rows"]:
            sim = r.get("sim_pressure_at_target_pa")
            lines.append(f"| {r['rank']} | {' '.join(f'{v:.1f}' for v in r['position_mm'])} | {r['tilt_deg']:.1f} | "
                         f"{r['pressure_at_target_pa'] / 1e3:.1f} | {f'{sim / 1e3:.1f}' if sim else ''} |")
        lines += ["", f"![candidates over the head]({rel(cfg.out_dir / 'plan' / 'ranking.png')})"]
    return "\n".join(lines) + "\n"


def _predict_through_api(cfg: DemoConfig, samples: list[dict]) -> list[dict]:
    """Start `tfus serve` against the demo's Prefect server, request a prediction per sample, stop serving."""
    out_root = (cfg.out_dir / "predictions").resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    serve_log = open(cfg.out_dir / "serve.log", "w")
    print(f"      $ tfus serve --model {cfg.run_dir} --output-root {out_root}   (in the background)")
    server = subprocess.Popen([sys.executable, "-m", "tfus.flows.cli", "serve", "--model", str(cfg.run_dir.resolve()),
                               "--output-root", str(out_root)], stdout=serve_log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    try:
        from tfus.flows.client import wait_for_deployment  # noqa: PLC0415  (imports prefect: after the server is up)

        wait_for_deployment(timeout_s=180, proc=server)  # serve registers once its model is loaded
        summaries = []
        for i, sample in enumerate(samples):
            proc = tfus("request", "predict", "--store", cfg.store.resolve(), "--sample-id", sample["sample_id"],
                        "--out-dir", f"demo-request-{i}", "--timeout", 300, capture=True)
            summaries.append(json.loads(proc.stdout))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        serve_log.close()
    for sample, summary in zip(samples, summaries):
        print(f"      {sample['sample_id']}: predicted focus {summary.get('focal_point_mm')} mm; simulated focus "
              f"{sample.get('focal_point_mm')} mm")
    return summaries


def _compare(cfg: DemoConfig, sample: dict, summary: dict, name: str = "prediction_vs_simulation") -> dict:
    from tfus.models.compare import compare_with_simulation  # noqa: PLC0415

    png = cfg.out_dir / "figures" / f"{name}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    metrics = compare_with_simulation(summary["pressure_path"], str(cfg.store), sample["sample_id"], png)
    print("      prediction vs simulation: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()))
    return metrics


def _figures(cfg: DemoConfig, sample: dict, real: dict | None) -> dict[str, Path]:
    figs = cfg.out_dir / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    sample_png = figs / "sample_simulation.png"
    tfus("show", cfg.store, sample["sample_id"], "--png", sample_png)
    out = {"sample": sample_png, "curves": cfg.run_dir / "curves.png",
           "prediction": figs / "prediction_vs_simulation.png"}
    if real is not None:
        tfus("show", cfg.store, real["sample_id"], "--png", figs / "colin27_simulation.png")
        out.update(real_sample=figs / "colin27_simulation.png", real_prediction=figs / "colin27_prediction.png")
        if real.get("qc_png"):
            shutil.copyfile(real["qc_png"], figs / "colin27_pseudo_ct_qc.png")
            out["real_qc"] = figs / "colin27_pseudo_ct_qc.png"
    return out


def _metrics_table(metrics: dict) -> str:
    names = ("rel_l2", "focal_error_mm", "max_pressure_error", "dice_6db")
    lines = ["| model | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for model, entry in metrics.items():
        if model.startswith("_"):
            continue
        cells = [f"{entry[n]['mean']:.3g} ± {entry[n]['std']:.2g} (median {entry[n]['median']:.3g})"
                 for n in names]
        lines.append(f"| {model} | {entry['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(metrics: dict) -> str:
    """One sentence: does the model beat the free field on the held-out samples (means, and per sample)?"""
    model, free = metrics.get("deeptfus"), metrics.get("free_field")
    if not model or not free:
        return ""
    pairs = metrics.get("_comparison", {}).get("deeptfus_vs_free_field", {})
    parts = []
    for name, label in (("rel_l2", "rel-L2"), ("focal_error_mm", "focal error (mm)"),
                        ("intracranial_focal_error_mm", "intracranial focal error (mm)")):
        if name in model and name in free:
            a, b = model[name]["mean"], free[name]["mean"]
            share = pairs.get(name, {}).get("a_better_fraction")
            on = f", lower on {share:.0%} of the samples" if share is not None else ""
            parts.append(f"{label} {a:.3g} vs {b:.3g} ({'better' if a < b else 'worse'}{on})")
    beats = all(model[n]["mean"] < free[n]["mean"] for n in ("rel_l2", "focal_error_mm") if n in model and n in free)
    head = "**The model beats the free field**" if beats else "**The model does not beat the free field**"
    return f"{head} on the {model['n']} held-out samples: " + "; ".join(parts) + "."


def _real_head_section(cfg: DemoConfig, real: dict | None, compare: dict | None, figs: dict) -> str:
    if real is None:
        return "## A real head\nSkipped: the Colin27 T1 (Debian package mricron-data) is not installed.\n"
    rel = lambda p: os.path.relpath(p, cfg.out_dir)  # noqa: E731
    qc = f"![Colin27 T1 with the skull outline]({rel(figs['real_qc'])})\n" if "real_qc" in figs else ""
    cmp = ", ".join(f"**{k}** {v:.3g}" for k, v in (compare or {}).items())
    return f"""## A real head: Colin27 (T1 → pseudo-CT → simulation → prediction)
`tfus generate --subjects-t1 /usr/share/mricron/templates/ch2.nii.gz` turned the Colin27 T1 into a pseudo-CT
(a Prefect task; cached in `{cfg.store}.subjects/`) and simulated {cfg.placements} placements over its vault.
Skull over the vault: thickness median {real.get('skull_thickness_median_mm')} mm (5–95 %
{real.get('skull_thickness_p5_mm')}–{real.get('skull_thickness_p95_mm')} mm), encloses the brain on
{100 * float(real.get('vault_enclosed_fraction') or 0):.0f} % of the vault rays, volume {real.get('skull_volume_ml')} mL.

{qc}
Sample `{real['sample_id']}`: simulated peak {float(real.get('peak_pressure_pa') or 0) / 1e3:.1f} kPa at
{real.get('focal_point_mm')} mm.

![Colin27 pseudo-CT and simulated pressure]({rel(figs['real_sample'])})

Prediction through the flow API for this placement (a model trained on phantoms only) against its simulation: {cmp}.

![prediction on the real head]({rel(figs['real_prediction'])})
"""


def _write_report(cfg: DemoConfig, sample: dict, metrics: dict, summary: dict, compare: dict,
                  figs: dict[str, Path], times: dict[str, float], real_section: str = "",
                  plan_section: str = "") -> Path:
    rel = lambda p: os.path.relpath(p, cfg.out_dir)  # noqa: E731
    timing = "\n".join(f"| {k} | {v:.0f} |" for k, v in times.items())
    text = f"""# tfus demo report

Synthetic heads: {cfg.subjects}, placements per head: {cfg.placements}, preset `{cfg.preset}`,
Dask workers: {cfg.workers}, model `{cfg.model_config}` trained {cfg.epochs} epochs{" with the free-field prior (`tfus train --prior`)" if cfg.prior else ""}.
Dataset: `{cfg.store}` (inspect with `tfus stats {cfg.store}`). Research use only; not a medical device.

## A held-out sample: CT and simulated field
Sample `{sample['sample_id']}` (subject `{sample.get('subject_id')}`, split test), simulated peak
{float(sample.get('peak_pressure_pa') or 0) / 1e3:.1f} kPa at {sample.get('focal_point_mm')} mm.

![CT and simulated pressure]({rel(figs['sample'])})

## Prediction requested through the flow API
`predict-field/default` (served by `tfus serve`), summary:

```json
{json.dumps(summary, indent=2)}
```

Against the simulation of the same placement (normalised fields, log(1 + p/max p)):
{", ".join(f"**{k}** {v:.3g}" for k, v in compare.items())}.

![prediction, simulation and error]({rel(figs['prediction'])})

{real_section}
{plan_section}
## Training
![training curves]({rel(figs['curves'])})

## Test-split metrics (held-out subjects)
{_metrics_table(metrics)}

rel_l2 and max_pressure_error are measured on the normalised fields, as the DeepTFUS paper does; the focal
error is the distance between the peaks in mm; dice_6db compares the −6 dB focal volumes.

{_verdict(metrics)}
See docs/RESULTS.md for larger runs.

## Time per step (s)
| step | seconds |
|---|---|
{timing}
"""
    path = cfg.out_dir / "report.md"
    path.write_text(text)
    return path


def run_demo(cfg: DemoConfig) -> Path:
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    steps = _Steps(9)
    with local_prefect_server() as api_url:
        print(f"Prefect API: {api_url}")
        steps.run("Synthetic heads (tfus phantom)", _make_heads, cfg)
        steps.run("Dataset generation flow on a local Dask cluster (tfus generate)", _generate, cfg)
        real = steps.run("A real head: Colin27 T1 → pseudo-CT → simulations (tfus generate --subjects-t1)",
                         _real_head, cfg)
        sample = steps.run("Query the dataset (tfus stats / tfus query)", _query, cfg)
        steps.run("Train DeepTFUS (tfus train)", _train, cfg)
        metrics = steps.run("Evaluate on held-out subjects vs free field (tfus evaluate)", _evaluate, cfg)
        planned = steps.run("Pressure in Pa and a placement chosen by the model (tfus train-peak + tfus plan "
                            "--optimize)", _pressure_and_plan, cfg, sample)
        summaries = steps.run("Predictions through the flow API (tfus serve + tfus request)",
                              _predict_through_api, cfg, [sample] + ([real] if real else []))
        compare = _compare(cfg, sample, summaries[0])
        real_compare = _compare(cfg, real, summaries[1], "colin27_prediction") if real else None
        figs = steps.run("Report", _figures, cfg, sample, real)
    return _write_report(cfg, sample, metrics, summaries[0], compare, figs, steps.times,
                         _real_head_section(cfg, real, real_compare, figs), _plan_section(cfg, planned))
