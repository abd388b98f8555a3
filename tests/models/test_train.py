import json

import numpy as np
import pytest
import torch

from tfus.models import checkpoint
from tfus.models.config import TrainConfig
from tfus.models.network import DeepTFUS
from tfus.models.predict import Predictor
from tfus.models.train import train
from tests.models.conftest import FAST_TRAIN, make_store, small_config


def test_run_directory_contents(trained_runs):
    run = trained_runs["deeptfus"]
    for name in ("best.safetensors", "last.safetensors", "config.json", "history.csv", "history.json",
                 "curves.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["name"] == "test-small" and config["sim_config"]["window_shape"] == [16, 16, 16]
    assert config["model_id"].startswith("test-small-") and len(config["config_hash"]) == 64
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1]
    assert np.isfinite(history[0]["val_loss"]) and 0 <= history[0]["val_dice_6db"] <= 1


def test_training_resumes(synthetic_store, tmp_path):
    out = tmp_path / "run"
    first = train(synthetic_store, small_config(), out, TrainConfig(epochs=1, **FAST_TRAIN), progress=False)
    last_after_1 = checkpoint._read(out / "last.safetensors")
    second = train(synthetic_store, small_config(), out, TrainConfig(epochs=2, **FAST_TRAIN), progress=False)
    assert first["epochs"] == 1 and second["epochs"] == 2
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[0] == first["history"][0]  # epoch 1 was not rerun
    assert history[1]["lr"] < history[0]["lr"]  # the cosine schedule went on
    last_after_2 = checkpoint._read(out / "last.safetensors")
    assert any(not torch.equal(last_after_1[k], last_after_2[k]) for k in last_after_1 if k.startswith("model/"))
    # nothing left to do: a third call with the same epochs does not train
    third = train(synthetic_store, small_config(), out, TrainConfig(epochs=2, **FAST_TRAIN), progress=False)
    assert third["history"] == second["history"]
    with pytest.raises(ValueError, match="different model/train/dataset config"):
        train(synthetic_store, small_config(base_width=8), out, TrainConfig(epochs=2, **FAST_TRAIN), progress=False)


def test_save_load_identical_predictions(trained_runs, tmp_path):
    run = trained_runs["deeptfus"]
    a, b = Predictor.from_run(run), Predictor.from_run(run)
    rng = np.random.default_rng(1)
    ct, points = rng.uniform(0, 2000, (16, 16, 16)).astype(np.float32), rng.uniform(0, 15, (64, 3))
    pa = a.predict_window(ct, points)
    assert pa.shape == (16, 16, 16) and pa.dtype == np.float32
    assert np.array_equal(pa, b.predict_window(ct, points))
    # an in-memory model, saved and reloaded, predicts the same
    model = DeepTFUS(small_config()).eval()
    checkpoint.save_weights(model, tmp_path / "w.safetensors")
    clone = DeepTFUS(small_config()).eval()
    checkpoint.load_weights(clone, tmp_path / "w.safetensors")
    x, p = torch.rand(1, 1, 16, 16, 16), torch.rand(1, 32, 3) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x, p), clone(x, p))


def test_bad_checkpoints_and_inputs(trained_runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Predictor.from_run(tmp_path)
    with pytest.raises(ValueError, match="does not match the model config"):
        checkpoint.load_weights(DeepTFUS(small_config(base_width=8)), trained_runs["deeptfus"] / "best.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        checkpoint.load_weights(DeepTFUS(small_config()), tmp_path / "bad.safetensors")
    predictor = Predictor.from_run(trained_runs["deeptfus"])
    with pytest.raises(ValueError, match="differs from the model's training window"):
        predictor.predict_window(np.zeros((16, 16, 8)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        predictor.predict_window(np.full((16, 16, 16), np.nan), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="transducer points"):
        predictor.predict_window(np.zeros((16, 16, 16)), np.full((4, 3), np.inf))


def test_too_few_samples_per_split(tmp_path):
    url = make_store(tmp_path / "noval.zarr", n_subjects=2, per_subject=1, splits=("train",))
    with pytest.raises(ValueError, match="0 complete samples in split 'val'.*--no-val"):
        train(url, small_config(), tmp_path / "run", TrainConfig(epochs=1, **FAST_TRAIN), progress=False)
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_no_val_trains_without_validation_and_keeps_the_last_epoch(tmp_path):
    """Two subjects, both train: --no-val trains, and the kept weights are the last epoch's (the run's
    last.safetensors model), not a validation pick; a predictor loads them."""
    url = make_store(tmp_path / "noval.zarr", n_subjects=2, per_subject=1, splits=("train",))
    out = tmp_path / "run"
    summary = train(url, small_config(), out, TrainConfig(epochs=2, no_val=True, **FAST_TRAIN), progress=False)
    assert summary["epochs"] == 2 and summary["best_epoch"] == 2 and summary["best_val_loss"] is None
    config = json.loads((out / "config.json").read_text())
    assert config["validated"] is False and config["best_epoch"] == 2
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and "val_loss" not in history[0]
    best, last = checkpoint._read(out / "best.safetensors"), checkpoint._read(out / "last.safetensors")
    assert all(torch.equal(best[k], last["model/" + k]) for k in best)
    assert Predictor.from_run(out).model_id == summary["model_id"]
    assert TrainConfig().resume_key() == TrainConfig(no_val=False).resume_key() != TrainConfig(no_val=True).resume_key()
