import pytest

from tfus.models.config import ModelConfig, TrainConfig, get_model_config, plain_unet_config


@pytest.mark.parametrize("changes, field", [
    ({"base_width": 0}, "base_width"),
    ({"depth": 0}, "depth"),
    ({"depth": 7}, "depth"),
    ({"dyn_kernel": 4}, "dyn_kernel"),
    ({"base_width": 12, "norm_groups": 8}, "base_width"),
    ({"attention_levels": (5,)}, "attention_levels"),
    ({"attention_levels": (1, 1)}, "attention_levels"),
    ({"heads": 3}, "heads"),
    ({"n_points": 0}, "n_points"),
    ({"film": "yes"}, "film"),
    ({"conditioning": False}, "conditioning"),
    ({"n_fourier": -1}, "n_fourier"),
    ({"dynamic_levels": (4,)}, "dynamic_levels"),
    ({"name": ""}, "name"),
])
def test_invalid_model_config_names_field(changes, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**changes)


@pytest.mark.parametrize("changes, field", [
    ({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"), ({"lr": 0}, "lr"),
    ({"grad_clip": -1.0}, "grad_clip"), ({"alpha": -1.0}, "alpha"), ({"grad_norm": "l3"}, "grad_norm"),
    ({"device": "tpu"}, "device"), ({"num_workers": -1}, "num_workers"),
    ({"mse_weight": 0.0, "grad_weight": 0.0}, "mse_weight"),
])
def test_invalid_train_config_names_field(changes, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**changes)


def test_presets_and_round_trip():
    for name in ("deeptfus", "deeptfus-tiny"):
        cfg = get_model_config(name)
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
        assert ModelConfig.from_dict(cfg.to_dict()).key() == cfg.key()
    assert get_model_config("deeptfus").divisor == 8
    plain = plain_unet_config(get_model_config("deeptfus-tiny"))
    assert not (plain.conditioning or plain.film or plain.dynamic_conv or plain.cross_attention)
    with pytest.raises(ValueError, match="unknown model config"):
        get_model_config("resnet")
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"widht": 3})


def test_resume_key_ignores_epochs_only():
    tc = TrainConfig(epochs=2)
    assert tc.replace(epochs=5).resume_key() == tc.resume_key()
    assert tc.replace(lr=1e-4).resume_key() != tc.resume_key()


def test_a_saved_config_without_the_drive_field_is_a_model_without_it():
    saved = ModelConfig().to_dict()
    saved.pop("drive_features")
    assert ModelConfig.from_dict(saved).drive_features is False
    assert ModelConfig().drive_features is True and ModelConfig.from_dict(ModelConfig().to_dict()).drive_features
