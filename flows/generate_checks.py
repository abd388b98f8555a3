"""Checks that ``generate_dataset`` runs before it spends any compute; each fails with one clear line.

The physics behind the checks lives in ``sim`` (config validation, memory estimate); this module only asks
and compares with what the cluster offers.
"""

from __future__ import annotations

import os
from pathlib import Path


def load_config(preset_or_config):
    """A SimConfig from a preset name, a file, a dict or a SimConfig; checked for dataset use."""
    from tfus import sim  # noqa: PLC0415

    if isinstance(preset_or_config, sim.SimConfig):
        config = preset_or_config
    elif isinstance(preset_or_config, dict):
        config = sim.SimConfig.from_dict(preset_or_config)
    else:
        config = sim.load_sim_config(preset_or_config)
    if config.window_shape is None:
        raise ValueError("simulation config: `window_shape` must be set for a dataset (samples share one grid)")
    sim.validate_config(config)
    return config


def check_counts(placements: int, workers: int | None, dask_address: str | None, slurm=None) -> None:
    if int(placements) != placements or placements < 1:
        raise ValueError(f"`placements` must be a positive integer, got {placements}")
    if slurm is None and dask_address is None and (workers is None or int(workers) != workers or workers < 1):
        raise ValueError(f"`workers` must be a positive integer, got {workers}")
    if dask_address is not None and "://" not in str(dask_address):
        raise ValueError(f"`dask_address` must look like tcp://HOST:PORT, got {dask_address!r}")


def check_store_writable(store_url: str) -> None:
    """A local store's directory (or its nearest existing parent) must be writable."""
    if "://" in store_url and not store_url.startswith("file://"):
        return  # remote stores are checked by opening them (storage.create_dataset)
    path = Path(store_url.removeprefix("file://"))
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"store {store_url}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"store {store_url}: {probe} is not writable")


def check_memory(config, workers: int | None, dask_address: str | None) -> int:
    """sim's estimate for one simulation against what a worker may use; returns the estimate (bytes).

    On an existing cluster (``dask_address``) this is the one cluster check before planning
    (``tfus.flows.cluster_check``): environment and versions of every worker, and their memory limits.
    """
    from tfus import sim  # noqa: PLC0415

    needed = int(sim.estimate_memory_bytes(config, tuple(config.window_shape)))
    if dask_address is not None:
        from tfus.flows.cluster_check import check_cluster  # noqa: PLC0415

        check_cluster(dask_address, needed)
        return needed
    import psutil  # noqa: PLC0415 - a distributed dependency

    available = int(psutil.virtual_memory().total / max(1, int(workers or 1)))  # LocalCluster's "auto"
    if needed > available:
        raise ValueError(f"simulation needs about {needed / 2**30:.2f} GiB per sample but a worker has "
                         f"{available / 2**30:.2f} GiB: use fewer workers per machine, bigger workers, "
                         "or a smaller window_shape")
    return needed


def store_grid(store_url: str) -> str | None:
    """The kind of window the samples of an existing store have ("beam" / "subject"; None: no store or no
    samples yet), read from the rows' simulation configs (rows from before the subject grid: "beam")."""
    import json  # noqa: PLC0415

    from tfus.storage import open_dataset  # noqa: PLC0415

    try:
        configs = open_dataset(store_url).array("config_json")[:]
    except (FileNotFoundError, ValueError):  # no store yet (or only its lease); create_dataset says the rest
        return None
    grids = {json.loads(c).get("grid", "beam") for c in configs if c}
    return None if not grids else grids.pop() if len(grids) == 1 else "mixed"


def check_grid(store_url: str, grid: str) -> None:
    """A store holds one kind of window: samples on beam-centred and on subject grids do not mix (a model
    trained on the store would see two tasks). Checked before the store is touched."""
    recorded = store_grid(store_url)
    if recorded is not None and recorded != grid:
        raise ValueError(f"store {store_url} holds {recorded}-grid windows; a --grid {grid} dataset needs "
                         "another store")
