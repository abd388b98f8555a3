"""The free-field prior (ModelConfig.prior): the untrained network is the free field, the dataset and the
predictor build the same channel, flips keep prior and points consistent, and training learns a correction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.conftest import FAST_TRAIN, small_config
from tfus.models.config import ModelConfig
from tfus.models.network import DeepTFUS

SHAPE = (16, 16, 16)


def _bowl_store(path, n_subjects=6, per_subject=2, seed=0) -> str:
    """Samples whose points lie on a real bowl (test preset) and whose field is its free-field beam halved
    beyond x = 8 (a 'skull' that transmits half): a correction of the prior to learn."""
    from tfus import storage
    from tfus.sim.beam_prior import free_field_prior, template_for
    from tfus.sim.config import get_preset
    from tfus.sim.ingest import axis_aligned_affine
    from tfus.sim.transducer import Bowl
    from tfus.sim.window import transducer_encoding

    cfg = get_preset("test").replace(window_shape=SHAPE, n_transducer_points=128)
    s = cfg.spacing_mm
    ds = storage.create_dataset(str(path), storage.DatasetSpec(SHAPE, s, 128), {"sim_config": cfg.to_dict()})
    affine = axis_aligned_affine(np.zeros(3), s)
    template = template_for(cfg.transducer, SHAPE, s, cfg.grid)
    rng = np.random.default_rng(seed)
    splits = ("train", "train", "train", "train", "val", "test")
    records, arrays = [], {}
    for subj in range(n_subjects):
        for k in range(per_subject):
            key = f"subj{subj:02d}-exp{k}"
            apex = np.array([-4.0, rng.uniform(6, 10), rng.uniform(6, 10)]) * s
            target = apex + np.array([20.0, rng.uniform(-4, 4), rng.uniform(-4, 4)]) * s
            points, _ = transducer_encoding(Bowl.from_config(apex, target, cfg.transducer), cfg.transducer, 128, affine)
            field = free_field_prior(template, points, SHAPE, s)
            field[8:] *= 0.5
            ct = np.zeros(SHAPE, np.float32)
            ct[8:10] = 1500.0
            records.append(storage.SampleRecord(key=key, sample_id=key, subject_id=f"subj{subj:02d}",
                                                split=splits[subj % len(splits)], position_mm=tuple(apex),
                                                target_mm=tuple(target), frequency_hz=cfg.transducer.frequency_hz,
                                                config_json="{}"))
            arrays[key] = dict(ct_hu=ct, pressure_pa=field, affine=affine, transducer_points=points,
                               meta={"peak_pressure_pa": float(field.max()), "runtime_s": 1.0,
                                     "summary": {"runtime_s": 1.0}})
    ds.reserve(records)
    for key, a in arrays.items():
        storage.write_sample(str(path), key, **a)
    ds.commit()
    return str(path)


@pytest.fixture(scope="module")
def bowl_store(tmp_path_factory):
    return _bowl_store(tmp_path_factory.mktemp("prior") / "ds.zarr")


def test_config_key_unchanged_without_prior():
    assert "prior" not in ModelConfig().to_dict()
    assert ModelConfig(prior=True).to_dict()["prior"] is True
    assert ModelConfig(prior=True).in_channels == 2
    assert ModelConfig(prior=True, conditioning=False, dynamic_conv=False, cross_attention=False, film=False,
                       attention_levels=()).in_channels == 3
    with pytest.raises(ValueError, match="`prior` must be a bool"):
        ModelConfig(prior="yes")


def test_untrained_network_is_the_prior():
    net = DeepTFUS(small_config(prior=True)).eval()
    ct, points = torch.rand(2, 1, *SHAPE), torch.rand(2, 32, 3) * 2 - 1
    prior = torch.rand(2, 1, *SHAPE)
    with torch.no_grad():
        assert torch.equal(net(ct, points, prior), prior)
    with pytest.raises(ValueError, match="corrects the free-field prior"):
        net(ct, points)


def test_dataset_prior_flips_with_the_points(bowl_store):
    """A flipped sample's prior equals the prior computed from its flipped points."""
    from tfus.models.data import StoreDataset, prior_channel

    ds = StoreDataset(bowl_store, "train", 128, augment=True, seed=3, prior=True)
    torch.manual_seed(0)
    flipped_somewhere = False
    for i in range(len(ds)):
        item = ds[i]
        pts_vox = (item["points"][:, :3].numpy() + 1) / 2 * (np.asarray(SHAPE) - 1)
        expect = prior_channel(ds.template, pts_vox, SHAPE, ds.spacing_mm)
        assert np.abs(item["prior"][0].numpy() - expect).max() < 0.02
        unflipped = ds.prior(ds.load(i)[3])
        flipped_somewhere |= bool(np.abs(unflipped - expect).max() > 0.05)
    assert flipped_somewhere


def test_training_learns_the_correction_and_predicts(bowl_store, tmp_path):
    from tfus.models.data import normalise_pressure
    from tfus.models.predict import Predictor
    from tfus.models.train import train_named
    from tfus import storage

    summary = train_named(bowl_store, "deeptfus-tiny", tmp_path / "run", prior=True, progress=False,
                          epochs=6, **{**FAST_TRAIN, "lr": 3e-3})
    hist = summary["history"]
    assert hist[-1]["val_rel_l2"] < 0.8 * hist[0]["val_rel_l2"]  # epoch 1 is already prior + one step
    predictor = Predictor.from_run(tmp_path / "run")
    sample = storage.SampleReader(bowl_store, "test")[0]
    field = predictor.predict_window(sample["ct_hu"], sample["transducer_points"])
    truth = normalise_pressure(sample["pressure_pa"])
    prior = predictor._prior([sample["transducer_points"]], SHAPE)[0, 0].numpy()
    err = lambda a: float(np.linalg.norm(a - truth) / np.linalg.norm(truth))  # noqa: E731
    assert err(field) < err(prior)  # the held-out subject: better than the free field
    batch = predictor.predict_windows(sample["ct_hu"], [sample["transducer_points"]] * 2, [None, None])
    assert np.allclose(batch[0], field, atol=1e-5)


def test_prior_bad_input_says_what_is_missing():
    from tfus.models.data import beam_template, store_spacing_mm
    from tfus.sim.config import get_preset

    with pytest.raises(ValueError, match="needs the simulation config"):
        beam_template(None, SHAPE, 1.5)
    with pytest.raises(ValueError, match="needs a fixed window shape"):
        beam_template(get_preset("test").to_dict(), None, 1.5)
    with pytest.raises(ValueError, match="isotropic positive spacing"):
        store_spacing_mm([1.0, 1.0, 2.0])
    assert store_spacing_mm([1.5, 1.5, 1.5]) == 1.5 == store_spacing_mm(1.5)
