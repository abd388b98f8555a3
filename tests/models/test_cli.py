"""The `tfus train/evaluate/predict` commands (flows/cli/model_cmds.py) end to end on the synthetic store."""

import json

from tfus.flows.cli import main


def test_cli_train_evaluate_and_errors(trained_runs, tmp_path, capsys):
    store = trained_runs["store"]
    # resuming the fixture's finished 1-epoch run through the CLI does no new training
    assert main(["train", "--store", store, "--config", "deeptfus-tiny", "--out", str(tmp_path / "r"),
                 "--epochs", "0"]) == 2
    assert "`epochs` must be an integer >= 1" in capsys.readouterr().err
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(trained_runs["deeptfus"]), "--store", store, "--split", "val",
                 "--out", str(out), "--baseline-model", str(trained_runs["plain"]), "--no-progress", "--figures", "0"]) == 0
    assert set(json.loads((out / "metrics.json").read_text())) == {"deeptfus", "unet_plain", "_meta", "_comparison"}
    printed = capsys.readouterr().out
    assert "deeptfus (n=4," in printed and "95% CI" in printed and "deeptfus_vs_unet_plain" in printed
    assert main(["predict", "--model", str(tmp_path / "missing"), "--ct", "x.nii.gz", "--position", "0", "0", "0",
                 "--target", "0", "0", "1", "--out", str(tmp_path / "p")]) == 2
    assert "config.json missing" in capsys.readouterr().err
