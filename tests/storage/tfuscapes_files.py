"""Small files in exactly the TFUScapes layout: data/<SUBJECT>/exp_<k>.npz (ct, pmap, tr_coords), splits/*.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

N = 16
FOCUS_VOX = (8, 9, 7)
CENTRE_VOX = np.array([8.0, 8.0, 8.0])   # centre of the bowl's sphere


def bowl_coords(radius: float = 7.0, n: int = 200) -> np.ndarray:
    """~n integer voxels on a spherical cap (like tr_coords: indices on the transducer surface)."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(n * 4, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v = v[v[:, 2] < -0.5]                                  # a cap facing +z
    pts = np.rint(CENTRE_VOX + radius * v).astype(np.int64)
    return np.unique(pts, axis=0)


def make_npz(path: Path, seed: int, **override) -> None:
    rng = np.random.default_rng(seed)
    ct = np.zeros((N, N, N), dtype=np.float64)
    ct[3:13, 3:13, 3:13] = rng.uniform(0, 1800, (10, 10, 10))
    x, y, z = np.meshgrid(*(np.arange(N),) * 3, indexing="ij")
    fx, fy, fz = FOCUS_VOX
    pmap = (1e5 * (seed + 1)) * np.exp(-((x - fx) ** 2 + (y - fy) ** 2 + (z - fz) ** 2) / 4.0)
    data = {"ct": ct, "pmap": pmap, "tr_coords": bowl_coords()}
    data.update(override)
    data = {k: v for k, v in data.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)


def make_tree(root: Path, subjects=("A001", "A002", "B003"), exps=2, splits=None) -> list[str]:
    """Write the tree; returns the entries. Default splits: A001 train, A002 val, B003 test."""
    entries = []
    for s_i, subject in enumerate(subjects):
        for k in range(exps):
            make_npz(root / "data" / subject / f"exp_{k}.npz", seed=10 * s_i + k)
            entries.append(f"{subject}/exp_{k}.npz")
    splits = splits or {"train": entries[:exps], "val": entries[exps:2 * exps], "test": entries[2 * exps:]}
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for name, listed in splits.items():
        (root / "splits" / f"{name}.txt").write_text("".join(f"{e}\n" for e in listed))
    return entries
