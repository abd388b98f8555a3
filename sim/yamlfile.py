"""Reading a YAML (or JSON) file that must hold a mapping, with one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path


def read_mapping(path: str | Path, what: str) -> dict:
    """The mapping in ``path``; ``ValueError`` for invalid YAML or a non-mapping (``what``: its fields)."""
    import yaml  # noqa: PLC0415

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML/JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {what}")
    return data
