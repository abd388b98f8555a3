import numpy as np
import pytest
import torch

from tfus.models.data import StoreDataset, flip_sample, normalise_ct, normalise_pressure, scale_points, subsample_points


def test_normalisations():
    assert np.allclose(normalise_ct(np.array([-500.0, 0.0, 1000.0, 2000.0, 4000.0])), [0, 0, 0.5, 1, 1])
    p = normalise_pressure(np.array([0.0, 5.0, 10.0]))
    assert np.allclose(p, np.log1p([0, 0.5, 1.0])) and np.isclose(p.max(), np.log(2))
    with pytest.raises(ValueError, match="zero everywhere"):
        normalise_pressure(np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        normalise_pressure(np.array([1.0, np.inf]))


def test_scale_and_subsample_points():
    pts = scale_points(np.array([[0, 0, 0], [15, 15, 15], [7.5, 0, 15]]), (16, 16, 16))
    assert np.allclose(pts, [[-1, -1, -1], [1, 1, 1], [0, -1, 1]])
    many = np.arange(300, dtype=np.float32).reshape(100, 3)
    a, b = subsample_points(many, 10), subsample_points(many, 10)
    assert np.array_equal(a, b) and len(a) == 10 and np.array_equal(a[0], many[0])
    r = subsample_points(many, 10, np.random.default_rng(0))
    assert len(np.unique(r[:, 0])) == 10
    with pytest.raises(ValueError, match=r"\(P, 3\)"):
        scale_points(np.zeros((4, 2)), (8, 8, 8))


def test_flip_keeps_transducer_consistent():
    ct = np.zeros((8, 8, 8), np.float32)
    target = np.zeros((8, 8, 8), np.float32)
    target[1, 2, 3] = 1.0
    points = scale_points(np.array([[1.0, 2.0, 3.0]]), (8, 8, 8))  # a point on the focus
    c2, t2, p2 = flip_sample(ct, target, points, [0, 2])
    focus = np.array(np.unravel_index(t2.argmax(), t2.shape))
    assert np.allclose((p2[0] + 1) / 2 * 7, focus)


def test_store_dataset_items(synthetic_store):
    ds = StoreDataset(synthetic_store, "train", n_points=32)
    assert len(ds) == 8 and all(s.startswith(("subj00", "subj01", "subj04", "subj05")) for s in ds.sample_ids)
    item = ds[0]
    assert item["ct"].shape == (1, 16, 16, 16) and item["target"].shape == (1, 16, 16, 16)
    assert item["points"].shape == (32, 5) and item["points"].abs().max() <= 1
    assert (item["points"][:, 3] == 1).all() and (item["points"][:, 4] == 0).all()  # single bowls in phase
    assert torch.isclose(item["target"].max(), torch.tensor(np.log(2), dtype=torch.float32))
    assert torch.equal(ds[0]["points"], item["points"])  # deterministic without augmentation
    with pytest.raises(ValueError, match="no complete samples"):
        StoreDataset(synthetic_store, "nosuchsplit", n_points=8)
