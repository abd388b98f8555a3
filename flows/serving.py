"""Serving-process state: the output root, the default model, and the model cache.

Both settings live in the environment (``TFUS_OUTPUT_ROOT``, ``TFUS_MODEL``) so that ``tfus serve`` sets them
once and every flow run of the process – and the subprocesses it starts – reads the same values. Clients
cannot change them: they are not flow parameters.

The cache keeps each model loaded once per process, keyed by the resolved run directory, its config hash
and the weights file's size and modification time (a retrained run is reloaded, an unchanged one never).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OUTPUT_ROOT_ENV = "TFUS_OUTPUT_ROOT"
MODEL_ENV = "TFUS_MODEL"
DEFAULT_OUTPUT_ROOT = "predictions"   # relative to the working directory when TFUS_OUTPUT_ROOT is unset
MAX_CACHED_MODELS = 2


def output_root() -> Path:
    """The directory every served output must lie under (created if missing)."""
    root = Path(os.environ.get(OUTPUT_ROOT_ENV) or DEFAULT_OUTPUT_ROOT).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def default_model() -> str | None:
    return os.environ.get(MODEL_ENV) or None


def configure(model_dir: str | os.PathLike | None = None, output_root_dir: str | os.PathLike | None = None) -> None:
    """Set the process's default model and output root (what ``tfus serve --model/--output-root`` does)."""
    if model_dir is not None:
        os.environ[MODEL_ENV] = str(check_run_dir(model_dir))
    if output_root_dir is not None:
        root = Path(output_root_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        os.environ[OUTPUT_ROOT_ENV] = str(root)


def confine(out_dir: str | os.PathLike | None, default_name: str, root: Path | None = None) -> Path:
    """``out_dir`` resolved under the output root; refuses anything that escapes it (``..``, symlinks).

    Relative paths are taken relative to the root; absolute ones must already lie inside it.
    """
    root = (root or output_root()).resolve()
    name = str(out_dir) if out_dir not in (None, "") else default_name
    if "\x00" in name:
        raise ValueError("`out_dir` contains a NUL character")
    path = Path(name).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise ValueError(f"`out_dir` {name!r} is outside the output root {root}; give a sub-directory of it")
    return resolved


def check_run_dir(model_dir: str | os.PathLike) -> Path:
    """A trained run directory (``config.json`` + ``best.safetensors``), resolved; clear errors otherwise."""
    run = Path(model_dir).expanduser().resolve()
    if not run.is_dir():
        raise FileNotFoundError(f"`model` run directory not found: {model_dir}")
    for name in ("config.json", "best.safetensors"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"`model` {model_dir} is not a trained run: {name} missing")
    return run


@dataclass(frozen=True)
class LoadedModel:
    """A predictor and how it was loaded (reported in summaries to show the cache at work)."""

    predictor: object
    run_dir: str
    config_hash: str
    loaded_at: float      # unix time of the load
    load_s: float
    load_number: int      # the n-th model load of this process


_cache: OrderedDict[tuple, LoadedModel] = OrderedDict()
_lock = threading.Lock()
_loads = 0


def cache_key(run: Path) -> tuple:
    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"`model` {run}: config.json is unreadable ({exc})") from exc
    config_hash = config.get("config_hash") or hashlib.sha256(
        json.dumps(config, sort_keys=True).encode()).hexdigest()
    weights = (run / "best.safetensors").stat()
    head = run / "peak" / "config.json"  # a pressure head added to a served run is picked up
    head_mtime = head.stat().st_mtime_ns if head.is_file() else None
    return str(run), config_hash, weights.st_size, weights.st_mtime_ns, head_mtime


def get_model(model_dir: str | os.PathLike) -> LoadedModel:
    """The cached predictor of ``model_dir``; loads it (safetensors + JSON, no pickle) on first use."""
    global _loads
    from tfus.models.predict import Predictor  # noqa: PLC0415  (torch: only where predictions happen)

    run = check_run_dir(model_dir)
    key = cache_key(run)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        t0 = time.perf_counter()
        predictor = Predictor.from_run(run)
        _loads += 1
        loaded = LoadedModel(predictor, str(run), key[1], time.time(), time.perf_counter() - t0, _loads)
        _cache[key] = loaded
        while len(_cache) > MAX_CACHED_MODELS:
            _cache.popitem(last=False)
        log.info("loaded model %s (load #%d, %.2f s)", run, _loads, loaded.load_s)
        return loaded


def model_loads() -> int:
    """How many model loads this process has done."""
    return _loads
