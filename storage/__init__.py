"""tfus dataset storage: the one package that knows the Zarr schema and opens stores (see docs/DATASET.md)."""

from storage.dataset import Dataset, Sample, create_dataset, open_dataset
from storage.reader import SampleReader
from storage.schema import SCHEMA_VERSION, DatasetSpec
from storage.writing import SampleRecord, write_sample

__all__ = [
    "SCHEMA_VERSION", "Dataset", "DatasetSpec", "Sample", "SampleReader", "SampleRecord", "create_dataset",
    "open_dataset", "write_sample", "export_sample", "render_sample_png", "stats", "import_tfuscapes",
]


def __getattr__(name):
    # Heavier entry points (nibabel, matplotlib) load on first use only.
    if name in ("export_sample", "render_sample_png"):
        from storage import export
        return getattr(export, name)
    if name == "stats":
        from storage.stats import stats
        return stats
    if name == "import_tfuscapes":
        from storage.tfuscapes import import_tfuscapes
        return import_tfuscapes
    raise AttributeError(f"module 'storage' has no attribute {name!r}")
