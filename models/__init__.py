"""DeepTFUS: network, data loading (through `storage`), losses, metrics, training, inference, evaluation.

Public names load lazily (``import models`` does not import torch until one is used). ``train`` and
``evaluate`` share their modules' names: use ``from models.train import train`` and
``from models.evaluate import evaluate``.
"""

_EXPORTS = {
    "ModelConfig": "tfus.models.config", "TrainConfig": "tfus.models.config", "get_model_config": "tfus.models.config",
    "plain_unet_config": "tfus.models.config", "DeepTFUS": "tfus.models.network", "CompositeLoss": "tfus.models.losses",
    "Predictor": "tfus.models.predict", "predict_from_ct": "tfus.models.predict",
    "sample_metrics": "tfus.models.metrics", "aggregate": "tfus.models.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfus.models' has no attribute {name!r}")
