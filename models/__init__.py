"""DeepTFUS: network, data loading (through `storage`), losses, metrics, training, inference, evaluation.

Public names load lazily (``import models`` does not import torch until one is used). ``train`` and
``evaluate`` share their modules' names: use ``from models.train import train`` and
``from models.evaluate import evaluate``.
"""

_EXPORTS = {
    "ModelConfig": "models.config", "TrainConfig": "models.config", "get_model_config": "models.config",
    "plain_unet_config": "models.config", "DeepTFUS": "models.network", "CompositeLoss": "models.losses",
    "Predictor": "models.predict", "predict_from_ct": "models.predict",
    "sample_metrics": "models.metrics", "aggregate": "models.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
