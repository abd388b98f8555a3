"""tfus dataset storage: the one package that knows the Zarr schema and opens stores (see docs/DATASET.md).

Heavy optional imports (nibabel, matplotlib, tqdm, xarray) happen inside the functions that need them.
"""

from tfus.storage.dataset import Dataset, create_dataset, open_dataset, write_sample
from tfus.storage.export import export_sample, render_sample_png
from tfus.storage.lease import StoreBusy, acquire as acquire_lease
from tfus.storage.reader import SampleReader
from tfus.storage.schema import SCHEMA_VERSION, DatasetSpec
from tfus.storage.summary import stats
from tfus.storage.tfuscapes import import_tfuscapes
from tfus.storage.sample import Sample
from tfus.storage.writing import SampleRecord

__all__ = [
    "SCHEMA_VERSION", "Dataset", "DatasetSpec", "Sample", "SampleReader", "SampleRecord", "StoreBusy",
    "acquire_lease", "create_dataset",
    "export_sample", "import_tfuscapes", "open_dataset", "render_sample_png", "stats", "write_sample",
]
