"""Dataset generation on Kubernetes with dask-kubernetes' KubeCluster (configuration example).

    pip install -e '.[cluster]'
    export PREFECT_API_URL=http://127.0.0.1:4200/api     # e.g. kubectl port-forward svc/prefect-server 4200
    python deploy/kubernetes/generate_kubernetes.py 'heads/*.nii.gz' s3://bucket/tfuscapes.zarr 8

Workers are pods of the image built by deploy/Dockerfile; the store must be object storage (s3://...)
that every pod reaches (credentials from the `tfus-s3` secret, see dask-cluster.yaml). The same cluster
can also be created declaratively with dask-cluster.yaml and used through --dask-address.
"""

import sys

from dask_kubernetes.operator import KubeCluster, make_cluster_spec

from tfus.flows.generate import generate_dataset

if __name__ == "__main__":
    subjects, store, n_workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spec = make_cluster_spec(name="tfus", image="tfus:latest", n_workers=n_workers,
                             resources={"requests": {"cpu": "1", "memory": "6Gi"},
                                        "limits": {"cpu": "1", "memory": "7Gi"}},
                             env={"DASK_CONFIG": "/app/deploy/dask-tfus.yaml",
                                  "PREFECT_API_URL": "http://prefect-server:4200/api"})
    with KubeCluster(custom_cluster_spec=spec, shutdown_on_close=True) as cluster:
        summary = generate_dataset(subjects=subjects, store=store, placements=5, preset="tfuscapes",
                                   dask_address=cluster.scheduler_address, progress=True)
    sys.exit(1 if summary["failed"] else 0)
