import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from tfus.models.predict import Predictor, field_summary, predict_from_ct


def test_field_summary_definition():
    field = np.zeros((8, 8, 8), np.float32)
    field[2, 3, 4] = np.log(2)            # linear 1.0
    field[2, 3, 5] = np.log1p(0.6)        # linear 0.6 ≥ half max → inside −6 dB
    field[5, 5, 5] = np.log1p(0.4)        # below half max
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    s = field_summary(field, affine)
    assert s["focal_point_mm"] == [14.0, 26.0, 38.0]
    assert np.isclose(s["focal_volume_mm3"], 2 * 8.0)
    assert np.isclose(s["peak_normalised"], np.log(2))


@pytest.fixture()
def run_32(trained_runs, tmp_path):
    """The trained small model (fully convolutional) re-declared for the 32³ `test` simulation window."""
    from tfus.sim.config import get_preset
    run = tmp_path / "run32"
    shutil.copytree(trained_runs["deeptfus"], run)
    config = json.loads((run / "config.json").read_text())
    config["sim_config"] = get_preset("test").to_dict()
    config["window_shape"] = [32, 32, 32]
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_predict_from_ct_writes_nifti_and_summary(run_32, tmp_path):
    from tfus.sim.config import get_preset
    from tfus.sim.phantom import make_phantom
    from tfus.sim.placement import plan_placements
    volume = make_phantom(0, spacing_mm=1.5)
    placement = plan_placements(volume, 1, 0, get_preset("test"))[0]
    predictor = Predictor.from_run(run_32)
    out = tmp_path / "pred"
    summary = predict_from_ct(predictor, volume, placement.position_mm, placement.target_mm, out)
    img = nib.load(out / "pressure_pred.nii.gz")
    assert img.shape == (32, 32, 32)
    data = np.asarray(img.dataobj)
    vox = np.array(np.unravel_index(data.argmax(), data.shape))
    assert np.allclose(img.affine[:3, :3] @ vox + img.affine[:3, 3], summary["focal_point_mm"], atol=1e-4)
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary and saved["inference_s"] > 0 and saved["focal_volume_mm3"] > 0
    assert saved["model_id"] == predictor.model_id and len(saved["config_hash"]) == 64
