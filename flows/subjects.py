"""Resolving the subjects of a generation: CT files (paths or globs) or ``phantom:N`` synthetic heads.

A subject is identified by its id (the file name without its image suffix, or ``phantom-0003``) and by the
sha256 of its bytes (``content_hash``): sample keys are built from the content hash, so an edited CT gives
new samples and a renamed one is recognised as done. Phantoms are written once, deterministically from the
seed, into a cache directory next to the store (``<store>.subjects/``) and are reused when already there.
The subject-disjoint split is a deterministic permutation of subject ids (seeded hash order).
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Subject:
    """One CT (a file or a DICOM folder) with a stable id and the sha256 of its content."""

    subject_id: str
    path: str
    content_hash: str

    def __post_init__(self) -> None:
        if not self.subject_id:
            raise ValueError("`subject_id` must not be empty")
        if len(self.content_hash) != 64:
            raise ValueError(f"`content_hash` must be a sha256 hex digest, got {self.content_hash!r}")


def content_hash(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of a folder's files (sorted names and bytes: a DICOM series)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def subject_id_for(path: str | os.PathLike) -> str:
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def phantom_count(spec: str) -> int | None:
    """``"phantom:N"`` → N; anything else → None."""
    if not spec.startswith("phantom:"):
        return None
    text = spec.split(":", 1)[1]
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"subjects {spec!r}: expected phantom:N with N a positive integer")
    return int(text)


def subjects_cache_dir(store_url: str) -> Path:
    """Where phantoms for a store are written: ``<store>.subjects/`` for a local store, else a user cache."""
    if "://" not in store_url or store_url.startswith("file://"):
        local = store_url.removeprefix("file://").rstrip("/")
        return Path(local + ".subjects")
    tag = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "tfus" / "subjects" / tag


def write_phantoms(n: int, seed: int, out_dir: Path, phantom_kwargs: dict | None = None) -> list[Path]:
    """N phantom NIfTI files, seeds ``seed .. seed+N-1``; existing ones (same options) are kept."""
    from tfus.sim import write_phantom  # noqa: PLC0415 - heavy import only when phantoms are asked for

    kwargs = dict(phantom_kwargs or {})
    tag = hashlib.sha256(repr(sorted(kwargs.items())).encode()).hexdigest()[:8]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = out_dir / f"phantom-{seed + i:04d}-{tag}.nii.gz"
        if not path.exists():  # write_phantom is atomic: an existing file is complete
            write_phantom(seed + i, path, **kwargs)
        paths.append(path)
    return paths


def expand_paths(specs: list[str]) -> list[Path]:
    """Paths and globs → existing, readable paths (sorted, de-duplicated); a clear error otherwise."""
    out: list[Path] = []
    for spec in specs:
        matches = sorted(glob.glob(os.path.expanduser(spec))) if glob.has_magic(spec) else [spec]
        if not matches:
            raise FileNotFoundError(f"subjects: no file matches {spec!r}")
        for match in matches:
            path = Path(match)
            if not path.exists():
                raise FileNotFoundError(f"subjects: {path} does not exist")
            if not os.access(path, os.R_OK):
                raise ValueError(f"subjects: {path} is not readable")
            if path.is_file() and path.stat().st_size == 0:
                raise ValueError(f"subjects: {path} is empty")
            if path not in out:
                out.append(path)
    return out


def resolve_subjects(subjects: str | list[str], store_url: str, seed: int = 0,
                     phantom_kwargs: dict | None = None) -> list[Subject]:
    """``"phantom:N"``, a glob, a path, or a list of those → subjects with ids and content hashes."""
    specs = [subjects] if isinstance(subjects, (str, os.PathLike)) else list(subjects)
    if not specs:
        raise ValueError("subjects: none given")
    paths: list[Path] = []
    for spec in map(str, specs):
        n = phantom_count(spec)
        if n is not None:
            paths += write_phantoms(n, seed, subjects_cache_dir(store_url), phantom_kwargs)
        else:
            paths += expand_paths([spec])
    out: dict[str, Subject] = {}
    for path in paths:
        sid = subject_id_for(path)
        if sid in out and Path(out[sid].path) != path.resolve():
            raise ValueError(f"subjects: two files have the id {sid!r} ({out[sid].path} and {path})")
        out[sid] = Subject(sid, str(path.resolve()), content_hash(path))
    return list(out.values())


def check_fractions(fractions) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"`split` must be three non-negative fractions (train val test) summing to 1, "
                         f"got {list(fractions)}")
    return values


def split_counts(n: int, fractions=(0.7, 0.15, 0.15)) -> tuple[int, int, int]:
    """Subjects per split for ``n`` subjects: rounded cumulative fractions; from 3 subjects on, every split
    with a non-zero fraction gets at least one subject (taken from the largest split), and train is never
    empty when it was asked for."""
    fractions = check_fractions(fractions)
    cut1 = round(n * fractions[0])
    cut2 = round(n * (fractions[0] + fractions[1]))
    counts = [cut1, cut2 - cut1, n - cut2]

    def move_one_to(i: int) -> None:  # from the largest split (it holds >= 2 whenever this is called)
        donor = max(range(3), key=lambda j: counts[j])
        counts[donor] -= 1
        counts[i] += 1

    if n and fractions[0] > 0 and counts[0] == 0:
        move_one_to(0)
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                move_one_to(i)
    return tuple(int(c) for c in counts)


def assign_splits(subject_ids: list[str], fractions=(0.7, 0.15, 0.15), seed: int = 0,
                  recorded: dict[str, str] | None = None) -> dict[str, str]:
    """Subject-disjoint split: subjects ordered by a seeded hash, filled into the counts of
    :func:`split_counts` in that order (train, val, test).

    ``recorded``: the split each subject already has in the store; those subjects keep it (a subject's
    samples never end up in two splits), and the others fill what the counts leave. 10 subjects at
    0.7/0.15/0.15 give 7/1/2; 4 give 2/1/1; 2 give 1/1/0 (``tfus generate`` says so).
    """
    present = set(subject_ids)
    recorded = {sid: split for sid, split in (recorded or {}).items() if sid in present}
    order = sorted(subject_ids, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    counts = list(split_counts(len(order), fractions))
    for split in recorded.values():
        counts[SPLITS.index(split)] -= 1
    out = dict(recorded)
    for sid in order:
        if sid in out:
            continue
        free = [i for i in range(3) if counts[i] > 0]
        i = free[0] if free else max(range(3), key=lambda j: fractions[j])  # all full: the largest fraction
        out[sid] = SPLITS[i]
        counts[i] -= 1
    return out


def describe_split(splits: dict[str, str]) -> str:
    """``"train 7 / val 2 / test 1 subjects"`` (what ``tfus generate`` reports before simulating)."""
    n = {name: sum(1 for s in splits.values() if s == name) for name in SPLITS}
    return " / ".join(f"{name} {n[name]}" for name in SPLITS) + " subjects"


def sample_key(subject_hash: str, placement_index: int, position_mm, target_mm, config_key: str) -> str:
    """sha256 of what determines a sample: the CT bytes, the placement and the simulation config."""
    pos = ",".join(f"{float(v):.6f}" for v in position_mm)
    tgt = ",".join(f"{float(v):.6f}" for v in target_mm)
    text = f"{subject_hash}|{placement_index}|{pos}|{tgt}|{config_key}"
    return hashlib.sha256(text.encode()).hexdigest()


def placement_seed(seed: int, subject_hash: str) -> int:
    """A per-subject placement seed: deterministic from the run seed and the subject's content."""
    return int(hashlib.sha256(f"{seed}:{subject_hash}".encode()).hexdigest()[:8], 16)
