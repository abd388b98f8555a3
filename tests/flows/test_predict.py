"""Parameter checks of the predict-field flow and output-root confinement (no server, no model)."""

from __future__ import annotations

import os

import pytest

from tfus.flows import serving
from tfus.flows.predict import PredictionRequest, parse_summary_markdown, summary_markdown

P, T = [-40.0, 0.0, 0.0], [0.0, 0.0, 0.0]


@pytest.mark.parametrize("params, message", [
    ({}, "missing input"),
    ({"position_mm": P, "target_mm": T}, "missing input"),
    ({"ct": "a.nii", "store": "s.zarr", "sample_id": "x"}, "not both"),
    ({"store": "s.zarr"}, "must be given together"),
    ({"sample_id": "x"}, "must be given together"),
    ({"ct": "a.nii"}, "required with `ct`"),
    ({"ct": "a.nii", "position_mm": P}, "`position_mm` and `target_mm` must be given together"),
    ({"ct": "a.nii", "position_mm": [1, 2], "target_mm": T}, "`position_mm` must be three finite numbers"),
    ({"ct": "a.nii", "position_mm": P, "target_mm": [0, "x", 0]}, "`target_mm` must be three numbers"),
    ({"ct": "a.nii", "position_mm": [0, float("nan"), 0], "target_mm": T}, "finite"),
])
def test_invalid_requests_are_refused(params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        PredictionRequest(**params)


def test_valid_requests():
    assert PredictionRequest(ct="a.nii", position_mm=P, target_mm=T).position_mm == tuple(P)
    sample = PredictionRequest(store="s.zarr", sample_id="x")
    assert sample.position_mm is None and sample.target_mm is None


@pytest.mark.parametrize("out_dir", ["../../etc", "..", "/etc", "a/../../b", ".", ""])
def test_confine_refuses_paths_outside_the_root(tmp_path, out_dir):
    root = tmp_path / "root"
    root.mkdir()
    if out_dir == "":
        assert serving.confine(out_dir, "default", root) == root / "default"
        return
    with pytest.raises(ValueError, match="outside the output root"):
        serving.confine(out_dir, "default", root)


def test_confine_resolves_symlinks(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(ValueError, match="outside the output root"):
        serving.confine("link/x", "default", root)
    assert serving.confine("a/b", "default", root) == root / "a" / "b"
    assert serving.confine(str(root / "c"), "default", root) == root / "c"


def test_missing_or_untrained_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        serving.check_run_dir(tmp_path / "absent")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="best.safetensors missing"):
        serving.check_run_dir(tmp_path / "run")


def test_summary_markdown_round_trip():
    summary = {"focal_point_mm": [1.0, 2.5, -3.0], "model_id": "m", "peak_normalised": 0.69}
    assert parse_summary_markdown(summary_markdown(summary)) == summary
