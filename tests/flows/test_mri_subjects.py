"""`generate_dataset(subjects_t1=...)`: a T1 (Colin27 at 2.5 mm) → pseudo-CT task → samples on Dask; the
table says the samples are MRI-derived, from which T1, with the skull QC; a rerun reuses the pseudo-CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfus.flows.generate import generate_dataset

from tests.flows.conftest import PRESET


@pytest.fixture(scope="module")
def colin_t1(tmp_path_factory):
    from tfus.sim.brainmask import colin27_paths, load_colin27
    from tfus.sim.ingest import grid_covering, resample, save_nifti

    try:
        colin27_paths()
    except FileNotFoundError:
        pytest.skip("Colin27 (Debian mricron-data) not installed")
    t1, _ = load_colin27()
    affine, shape = grid_covering(*t1.centre_bounds_mm(), 2.5)
    path = tmp_path_factory.mktemp("t1") / "colin.nii.gz"
    return save_nifti(resample(t1, affine, shape).hu, affine, path)


def test_generate_from_a_t1_records_where_each_sample_came_from(prefect_api, dask_client, colin_t1, tmp_path):
    from tfus.storage import open_dataset

    store = tmp_path / "ds.zarr"
    kwargs = dict(subjects=None, subjects_t1=[str(colin_t1)], store=str(store), placements=1, preset=PRESET,
                  seed=1, split=(1.0, 0.0, 0.0), dask_address=dask_client.scheduler.address)
    summary = generate_dataset(**kwargs)
    assert (summary["planned"], summary["done"], summary["failed"]) == (1, 1, 0), summary.get("failures")
    pct = list(Path(str(store) + ".subjects").glob("colin-pct-*.nii.gz"))
    assert len(pct) == 1 and pct[0].with_name(pct[0].name.replace(".nii.gz", ".qc.png")).exists()
    row = open_dataset(store).table.iloc[0]
    assert row["source"] == "t1" and str(colin_t1.resolve()) in row["source_t1"]
    assert row["vault_enclosed_fraction"] >= 0.95 and 3.0 < row["skull_thickness_median_mm"] < 14.0
    assert open_dataset(store).sample(row["sample_id"]).ct_hu.max() > 700  # the pseudo-CT's bone reached the window
    mtime = pct[0].stat().st_mtime_ns
    again = generate_dataset(**kwargs)
    assert again["done"] == 0 and pct[0].stat().st_mtime_ns == mtime  # cached pseudo-CT, sample complete


def test_a_pseudo_ct_made_for_another_frequency_is_never_reused(tmp_path):
    from tfus.flows.mri_subjects import pseudo_ct_path

    t1, store = tmp_path / "colin.nii.gz", str(tmp_path / "ds.zarr")
    at_250 = pseudo_ct_path(t1, "ab" * 32, store, 250e3)
    assert at_250 == pseudo_ct_path(t1, "ab" * 32, store, 250e3)
    assert at_250 != pseudo_ct_path(t1, "ab" * 32, store, 500e3)  # other bone HU: another file
    assert at_250.name.startswith("colin-pct-abababab")


def test_a_t1_that_is_a_ct_stops_the_run(prefect_api, dask_client, tmp_path):
    from tfus.sim.ingest import save_nifti
    from tfus.sim.phantom import make_phantom

    head = make_phantom(2, spacing_mm=3.0)
    path = save_nifti(np.where(head.hu == 0, -1000.0, head.hu).astype(np.float32), head.affine, tmp_path / "ct.nii.gz")
    with pytest.raises(ValueError, match="look like a CT"):
        generate_dataset(subjects=None, subjects_t1=[str(path)], store=str(tmp_path / "ds.zarr"), placements=1,
                         preset=PRESET, dask_address=dask_client.scheduler.address)
