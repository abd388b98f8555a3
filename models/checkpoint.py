"""Checkpoints as safetensors (tensors) + JSON (everything else) – loading never unpickles anything.

- ``save_weights`` / ``load_weights``: a model's state dict in one ``.safetensors`` file.
- ``save_training_state`` / ``load_training_state``: model + AdamW state tensors in one ``.safetensors``
  file whose metadata holds the JSON rest (epoch, optimizer param groups and step counts, scheduler state,
  history); written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file


def _atomic_save(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    _atomic_save(model.state_dict(), path)


def _read(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"checkpoint {path} is not a readable safetensors file: {exc}") from exc


def apply_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} does not match the model config: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
    model.load_state_dict(state, strict=True)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    apply_weights(model, _read(path), path)


def save_training_state(path: Path, model, optimizer, scheduler, info: dict) -> None:
    """``info`` (JSON-serialisable) is stored with the optimizer's and scheduler's non-tensor state."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    steps = {}
    for pid, state in opt["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[f"optim/{pid}/{name}"] = value
            else:
                steps.setdefault(str(pid), {})[name] = float(value)
    meta = {"info": info, "param_groups": opt["param_groups"], "scalars": steps,
            "scheduler": scheduler.state_dict()}
    _atomic_save(tensors, path, metadata={"json": json.dumps(meta)})


def load_training_state(path: Path, model, optimizer, scheduler) -> dict:
    """Restore model, optimizer and scheduler in place; return the stored ``info``."""
    tensors = _read(path)
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("json", "{}"))
    if "info" not in meta:
        raise ValueError(f"checkpoint {path} has no training state")
    apply_weights(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, path)
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, scalars in meta["scalars"].items():
        for name, value in scalars.items():
            state.setdefault(int(pid), {})[name] = torch.tensor(value, dtype=torch.float32)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    return meta["info"]
