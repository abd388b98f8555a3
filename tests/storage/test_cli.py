"""The dataset commands of the tfus CLI (flows/cli/storage_cmds.py), run in-process through main()."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tfus.flows.cli import main
from tfus.storage import open_dataset
from tests.storage import tfuscapes_files as tf
from tests.storage.helpers import key_of, make_store, sample_arrays


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = tmp_path_factory.mktemp("cli") / "ds.zarr"
    ds = make_store(url, n=6, write=range(5))
    ds.mark_failed(key_of(5), "mesh too coarse")
    return str(url)


def test_query_table_and_json(store, capsys):
    assert main(["query", store, "--split", "train"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["sample_id", "subject_id", "split", "status"]
    assert [line.split()[0] for line in out[1:]] == ["s0000", "s0001", "s0004"]
    assert main(["query", store, "--where", "peak_pressure_pa > 3e5", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["sample_id"] for r in rows] == ["s0003", "s0004"]
    assert rows[0]["position_mm"] == [3.0, 0.0, 1.0] and rows[0]["status"] == "complete"
    assert main(["query", store, "--status", "failed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "mesh too coarse"


def test_query_bad_where_exits_2(store, capsys):
    assert main(["query", store, "--where", "peak_pressure_pa >>> 1"]) == 2
    assert capsys.readouterr().err.startswith("error: invalid `where` expression")
    assert main(["query", store + ".nope"]) == 2
    assert "no dataset at" in capsys.readouterr().err


def test_show_export_stats(store, tmp_path, capsys):
    png = tmp_path / "s2.png"
    assert main(["show", store, "s0002", "--png", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["export", store, "s0002", "--out", str(tmp_path / "x")]) == 0
    np.testing.assert_allclose(nib.load(tmp_path / "x" / "pressure.nii.gz").affine, sample_arrays(2)["affine"])
    assert main(["export", store, "nope", "--out", str(tmp_path / "y")]) == 2
    assert "sample 'nope' does not exist" in capsys.readouterr().err
    assert main(["stats", store]) == 0
    out = capsys.readouterr().out
    assert "complete 5, failed 1" in out and "s0005: mesh too coarse" in out
    assert main(["stats", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == {"test": 1, "train": 3, "val": 1}


def test_import_tfuscapes_command(tmp_path, capsys):
    tf.make_tree(tmp_path / "src", subjects=("S1",), exps=3,
                 splits={"train": ["S1/exp_0.npz", "S1/exp_2.npz"], "test": ["S1/exp_1.npz"]})
    out = str(tmp_path / "ds.zarr")
    assert main(["import-tfuscapes", str(tmp_path / "src"), "--out", out, "--points", "8", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 3
    sim_config = open_dataset(out).attrs["sim_config"]        # sim's tfuscapes preset, fitted to these windows
    assert sim_config["window_shape"] == [16, 16, 16] and sim_config["n_transducer_points"] == 8
    assert sim_config["transducer"]["frequency_hz"] == 500e3
    assert main(["query", out, "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample_id"] == "S1-exp_1"
    assert main(["import-tfuscapes", str(tmp_path / "nothing"), "--out", out]) == 2
