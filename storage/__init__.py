"""tfus dataset storage: the one package that knows the Zarr schema and opens stores (see docs/DATASET.md).

Heavy optional imports (nibabel, matplotlib, tqdm, xarray) happen inside the functions that need them.
"""

from storage.dataset import Dataset, Sample, create_dataset, open_dataset
from storage.export import export_sample, render_sample_png
from storage.reader import SampleReader
from storage.schema import SCHEMA_VERSION, DatasetSpec
from storage.summary import stats
from storage.tfuscapes import import_tfuscapes
from storage.writing import SampleRecord, write_sample

__all__ = [
    "SCHEMA_VERSION", "Dataset", "DatasetSpec", "Sample", "SampleReader", "SampleRecord", "create_dataset",
    "export_sample", "import_tfuscapes", "open_dataset", "render_sample_png", "stats", "write_sample",
]
