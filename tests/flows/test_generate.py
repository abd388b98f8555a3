"""generate_dataset end to end on a real Prefect server and a real Dask LocalCluster (test preset, 32³)."""

from __future__ import annotations

import pytest

from tfus.flows.generate import generate_dataset
from tests.flows.conftest import PHANTOM_OPTIONS, PRESET
from tests.flows.flowcheck import artifacts_of, assert_store_complete, chunk_mtimes


def test_generate_end_to_end_then_rerun_skips_everything(prefect_api, dask_client, phantom_files, tmp_path):
    store = tmp_path / "ds.zarr"
    subjects = [str(p) for p in phantom_files[:2]]
    kwargs = dict(subjects=subjects, store=str(store), placements=1, preset=PRESET, seed=3, split=(0.5, 0.5, 0.0),
                  dask_address=dask_client.scheduler.address)
    state = generate_dataset(**kwargs, return_state=True)
    summary = state.result()
    assert (summary["planned"], summary["done"], summary["skipped"], summary["failed"]) == (2, 2, 0, 0)
    table = assert_store_complete(store, 2)
    # Subject-disjoint split: one subject per split here, each subject in exactly one split.
    assert table.groupby("subject_id")["split"].nunique().eq(1).all()
    assert set(table["split"]) == {"train", "val"}
    assert all(r["runtime_s"] > 0 for r in summary["samples"])
    artifacts = artifacts_of(state)
    assert {"generate-dataset", "generate-dataset-report"} <= set(artifacts)
    assert "done 2, skipped 0, failed 0" in artifacts["generate-dataset"].description
    assert summary["preview_png"] and open(summary["preview_png"], "rb").read(4) == b"\x89PNG"
    assert "file://" in artifacts["generate-dataset-report"].data

    before = chunk_mtimes(store)
    assert len(before) >= 2
    again = generate_dataset(**kwargs)
    assert (again["planned"], again["done"], again["skipped"], again["failed"]) == (2, 0, 2, 0)
    assert chunk_mtimes(store) == before  # nothing rewritten
    assert_store_complete(store, 2)


def test_phantom_subjects_are_written_once_and_reused(tmp_path):
    from tfus.flows.subjects import resolve_subjects

    store = str(tmp_path / "p.zarr")
    first = resolve_subjects("phantom:2", store, seed=5, phantom_kwargs=PHANTOM_OPTIONS)
    second = resolve_subjects("phantom:2", store, seed=5, phantom_kwargs=PHANTOM_OPTIONS)
    assert [s.content_hash for s in first] == [s.content_hash for s in second]
    assert len({s.content_hash for s in first}) == 2
    assert all(s.path.startswith(store + ".subjects/") for s in first)


@pytest.mark.parametrize("change, message", [
    ({"preset": "no-such-preset"}, "neither a preset"),
    ({"subjects": ["/nonexistent/head.nii.gz"]}, "does not exist"),
    ({"subjects": ["/nonexistent/*.nii.gz"]}, "no file matches"),
    ({"placements": 0}, "placements"),
    ({"split": (0.5, 0.2, 0.2)}, "split"),
])
def test_bad_input_fails_before_any_compute(prefect_api, phantom_files, tmp_path, change, message):
    store = tmp_path / "never.zarr"
    kwargs = dict(subjects=[str(phantom_files[0])], store=str(store), placements=1, preset=PRESET, workers=1)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        generate_dataset(**{**kwargs, **change})
    assert not store.exists()  # nothing half-created


def test_memory_estimate_larger_than_a_worker_fails_fast(prefect_api, phantom_files, tmp_path):
    config = tmp_path / "huge.yaml"
    config.write_text("base: test\nwindow_shape: [2048, 2048, 2048]\n")
    store = tmp_path / "never.zarr"
    with pytest.raises(ValueError, match="GiB"):
        generate_dataset(subjects=[str(phantom_files[0])], store=str(store), placements=1, preset=str(config),
                         workers=1)
    assert not store.exists()


def test_store_under_a_file_fails_fast(prefect_api, phantom_files, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        generate_dataset(subjects=[str(phantom_files[0])], store=str(blocker / "ds.zarr"), placements=1,
                         preset=PRESET, workers=1)


def test_split_is_subject_disjoint_deterministic_and_stable():
    from tfus.flows.subjects import assign_splits

    ids = [f"s{i}" for i in range(20)]
    a = assign_splits(ids, (0.7, 0.15, 0.15), seed=1)
    assert a == assign_splits(list(reversed(ids)), (0.7, 0.15, 0.15), seed=1)
    assert [list(a.values()).count(x) for x in ("train", "val", "test")] == [14, 3, 3]
    assert a != assign_splits(ids, (0.7, 0.15, 0.15), seed=2)


@pytest.mark.parametrize("n", range(3, 12))
def test_from_three_subjects_every_split_gets_one(n):
    from tfus.flows.subjects import assign_splits

    splits = assign_splits([f"s{i}" for i in range(n)], (0.7, 0.15, 0.15), seed=0)
    counts = [list(splits.values()).count(x) for x in ("train", "val", "test")]
    assert min(counts) >= 1 and sum(counts) == n and counts[0] >= counts[1]


def test_fewer_than_three_subjects_and_zero_fractions():
    from tfus.flows.subjects import split_counts

    assert split_counts(1) == (1, 0, 0) and split_counts(2) == (1, 1, 0)
    assert split_counts(5, (1.0, 0.0, 0.0)) == (5, 0, 0)       # a split asked to be empty stays empty
    assert split_counts(3, (0.5, 0.5, 0.0)) == (2, 1, 0)


def test_recorded_splits_are_kept_when_subjects_are_added():
    """A store made under the old rule (4 subjects: 3 train / 1 test) keeps every subject's split; the new
    subjects fill what the counts leave (here val first)."""
    from tfus.flows.subjects import assign_splits

    recorded = {"s0": "train", "s1": "train", "s2": "train", "s3": "test"}
    ids = [f"s{i}" for i in range(6)]
    splits = assign_splits(ids, (0.7, 0.15, 0.15), seed=0, recorded=recorded)
    assert all(splits[k] == v for k, v in recorded.items())
    assert sorted(splits[s] for s in ("s4", "s5")) == ["train", "val"]


def test_sample_key_changes_with_each_input():
    from tfus.flows.subjects import sample_key

    base = ("a" * 64, 0, (1.0, 2.0, 3.0), (0.0, 0.0, 0.0), "c" * 64)
    keys = {sample_key(*base), sample_key("b" * 64, *base[1:]), sample_key(*base[:2], (1.0, 2.0, 3.5), *base[3:]),
            sample_key(*base[:4], "d" * 64)}
    assert len(keys) == 4 and sample_key(*base) == sample_key(*base)


def test_only_infrastructure_faults_are_retried():
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    from tfus.flows.generate import is_infrastructure_error

    for exc in (KilledWorker("k", "w", 3), CommClosedError("gone"), ConnectionResetError(), TimeoutError()):
        assert is_infrastructure_error(exc), exc
    for exc in (ValueError("bad CT"), FileNotFoundError("x"), ZeroDivisionError(), KeyError("k"),
                RuntimeError("solver diverged"), ImportError("no module")):
        assert not is_infrastructure_error(exc), exc


def test_generate_with_a_steered_array_records_the_transducer(prefect_api, dask_client, phantom_files, tmp_path):
    """An annular array (custom YAML, 3 rings on the flow tests' bowl) steered geometrically to 16 mm (the
    tiny bowl is too small at 200 kHz to move its peak there): the table carries its name,
    focal distance and ring phases; each stored surface point its ring and phase."""
    import numpy as np

    from tfus.sim import load_sim_config
    from tfus.storage import open_dataset

    array = tmp_path / "array.yaml"
    array.write_text("frequency_hz: 200000\nroc_mm: 20\naperture_mm: 16\n"
                     "rings_mm: [[0, 8], [8.5, 12.5], [13, 16]]\nfocal_range_mm: [10, 25]\n")
    config = tmp_path / "array-test.yaml"  # the flow tests' tiny config with the array in place of its bowl
    tiny = [line for line in open(PRESET).read().splitlines() if not line.startswith("transducer:")]
    config.write_text("\n".join(tiny) + f"\ntransducer: {{library: {array}, focal_distance_mm: 16, steering: geometric}}\n")
    store = tmp_path / "ds.zarr"
    summary = generate_dataset(subjects=[str(phantom_files[0])], store=str(store), placements=1,
                               preset=str(config), seed=3, split=(1.0, 0.0, 0.0),
                               dask_address=dask_client.scheduler.address)
    assert (summary["planned"], summary["done"], summary["failed"]) == (1, 1, 0), summary.get("failures")
    ds = open_dataset(store)
    row = ds.table.iloc[0]
    phases = load_sim_config(str(config)).transducer.ring_phases()
    assert ds.schema_version == 2 and row["transducer"] == "custom" and row["focal_distance_mm"] == 16.0
    assert len(row["ring_phases_rad"]) == 3 and np.allclose(row["ring_phases_rad"], phases)
    assert len(set(np.round(phases, 6))) == 3  # steered: the rings are not in phase
    sample = ds.sample(row["sample_id"])
    ring = sample.transducer_drive[:, 0].astype(int)
    assert set(ring) == {0, 1, 2} and np.allclose(sample.transducer_drive[:, 1], 1.0)
    np.testing.assert_allclose(sample.transducer_drive[:, 2], np.asarray(phases)[ring], atol=1e-6)
    assert sample.meta["config"]["transducer"]["focal_distance_mm"] == 16.0


def test_generate_on_a_subject_grid_then_a_beam_run_on_that_store_is_refused(prefect_api, dask_client,
                                                                            phantom_files, tmp_path):
    """--grid subject: every sample of a subject on one window, the bowl moving inside it; the store records
    the mode, and a beam-centred run on it is refused before anything is written."""
    import numpy as np

    from tfus.storage import open_dataset

    store = tmp_path / "fixed.zarr"
    kwargs = dict(subjects=[str(phantom_files[1])], store=str(store), placements=2, preset=PRESET, seed=1,
                  split=(1.0, 0.0, 0.0), dask_address=dask_client.scheduler.address)
    summary = generate_dataset(**kwargs, grid="subject")
    assert (summary["planned"], summary["done"], summary["failed"]) == (2, 2, 0), summary.get("failures")
    ds = open_dataset(store)
    assert ds.attrs["grid"] == "subject" and ds.attrs["sim_config"]["grid"] == "subject"
    a, b = (ds.sample(sid) for sid in ds.table["sample_id"])
    assert np.array_equal(a.affine, b.affine) and np.array_equal(a.ct_hu, b.ct_hu)
    assert np.linalg.norm(a.transducer_points.mean(0) - b.transducer_points.mean(0)) > 1.0
    before = chunk_mtimes(store)
    with pytest.raises(ValueError, match="holds subject-grid windows; a --grid beam dataset needs another store"):
        generate_dataset(**kwargs)
    assert chunk_mtimes(store) == before and open_dataset(store).attrs["grid"] == "subject"
