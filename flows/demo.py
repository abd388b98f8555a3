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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tfus.flows.runtime import local_prefect_server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in under 20 minutes on 2 cores."""

    out_dir: Path = Path("demo")
    subjects: int = 4
    placements: int = 2
    preset: str = "demo"
    workers: int = 2
    model_config: str = "deeptfus-tiny"
    epochs: int = 30
    seed: int = 0

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


def _query(cfg: DemoConfig) -> dict:
    tfus("stats", cfg.store)
    tfus("query", cfg.store, "--split", "test")
    out = tfus("query", cfg.store, "--split", "test", "--json", capture=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]  # JSON lines
    if not rows:
        raise RuntimeError(f"no complete test samples in {cfg.store}; see `tfus stats {cfg.store}`")
    return rows[0]


def _train(cfg: DemoConfig) -> None:
    tfus("train", "--store", cfg.store, "--config", cfg.model_config, "--out", cfg.run_dir,
         "--epochs", cfg.epochs)


def _evaluate(cfg: DemoConfig) -> dict:
    out = cfg.out_dir / "evaluation"
    tfus("evaluate", "--model", cfg.run_dir, "--store", cfg.store, "--split", "test", "--out", out,
         "--free-field")
    return json.loads((out / "metrics.json").read_text())


def _predict_through_api(cfg: DemoConfig, sample: dict) -> dict:
    """Start `tfus serve` against the demo's Prefect server, request one prediction, stop serving."""
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
        proc = tfus("request", "predict", "--store", cfg.store.resolve(), "--sample-id", sample["sample_id"],
                    "--out-dir", "demo-request", "--timeout", 300, capture=True)
        summary = json.loads(proc.stdout)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        serve_log.close()
    print(f"      predicted focus {summary.get('focal_point_mm')} mm; simulated focus "
          f"{sample.get('focal_point_mm')} mm")
    return summary


def _compare(cfg: DemoConfig, sample: dict, summary: dict) -> dict:
    from tfus.models.compare import compare_with_simulation  # noqa: PLC0415

    png = cfg.out_dir / "figures" / "prediction_vs_simulation.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    metrics = compare_with_simulation(summary["pressure_path"], str(cfg.store), sample["sample_id"], png)
    print("      prediction vs simulation: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()))
    return metrics


def _figures(cfg: DemoConfig, sample: dict) -> dict[str, Path]:
    figs = cfg.out_dir / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    sample_png = figs / "sample_simulation.png"
    tfus("show", cfg.store, sample["sample_id"], "--png", sample_png)
    return {"sample": sample_png, "curves": cfg.run_dir / "curves.png",
            "prediction": figs / "prediction_vs_simulation.png"}


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


def _write_report(cfg: DemoConfig, sample: dict, metrics: dict, summary: dict, compare: dict,
                  figs: dict[str, Path], times: dict[str, float]) -> Path:
    rel = lambda p: os.path.relpath(p, cfg.out_dir)  # noqa: E731
    timing = "\n".join(f"| {k} | {v:.0f} |" for k, v in times.items())
    text = f"""# tfus demo report

Synthetic heads: {cfg.subjects}, placements per head: {cfg.placements}, preset `{cfg.preset}`,
Dask workers: {cfg.workers}, model `{cfg.model_config}` trained {cfg.epochs} epochs.
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

## Training
![training curves]({rel(figs['curves'])})

## Test-split metrics (held-out subjects)
{_metrics_table(metrics)}

rel_l2 and max_pressure_error are measured on the normalised fields, as the DeepTFUS paper does; the focal
error is the distance between the peaks in mm; dice_6db compares the −6 dB focal volumes. A model trained
for minutes on a dozen samples is not expected to beat the free-field baseline; the point of the demo is
the pipeline. See docs/RESULTS.md for a larger run.

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
    steps = _Steps(7)
    with local_prefect_server() as api_url:
        print(f"Prefect API: {api_url}")
        steps.run("Synthetic heads (tfus phantom)", _make_heads, cfg)
        steps.run("Dataset generation flow on a local Dask cluster (tfus generate)", _generate, cfg)
        sample = steps.run("Query the dataset (tfus stats / tfus query)", _query, cfg)
        steps.run("Train DeepTFUS (tfus train)", _train, cfg)
        metrics = steps.run("Evaluate on held-out subjects vs free field (tfus evaluate)", _evaluate, cfg)
        summary = steps.run("Prediction through the flow API (tfus serve + tfus request)",
                            _predict_through_api, cfg, sample)
        compare = _compare(cfg, sample, summary)
        figs = steps.run("Report", _figures, cfg, sample)
    return _write_report(cfg, sample, metrics, summary, compare, figs, steps.times)
