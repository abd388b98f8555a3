"""Dataset generation on SLURM through dask-jobqueue (configuration example; run on a login node).

    pip install -e '.[cluster]'
    export DASK_CONFIG=deploy/dask-tfus.yaml:deploy/slurm/dask-jobqueue.yaml
    export PREFECT_API_URL=http://LOGIN_NODE:4200/api      # a `prefect server start` reachable from nodes
    python deploy/slurm/generate_slurm.py 'heads/*.nii.gz' /shared/fs/tfuscapes.zarr 32

The store must be on a filesystem every node sees (or s3://...). SLURM jobs are workers; the scheduler runs
here; the flow connects to it by address.
"""

import sys

from dask_jobqueue import SLURMCluster

from tfus.flows.generate import generate_dataset

if __name__ == "__main__":
    subjects, store, n_jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with SLURMCluster(scheduler_options={"dashboard_address": "127.0.0.1:8787"}) as cluster:
        cluster.scale(jobs=n_jobs)
        summary = generate_dataset(subjects=subjects, store=store, placements=5, preset="tfuscapes",
                                   dask_address=cluster.scheduler_address, progress=True)
    sys.exit(1 if summary["failed"] else 0)
