"""Segmentation task: loss and metric values on hand-made masks, sliding window, end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from PIL import Image

from medilab import api
from medilab.config import apply_overrides, validate_config
from medilab.errors import ConfigError, InputFileError
from medilab.models import create_model
from medilab.tasks.segmentation import SegmentationModule
from medilab.tasks.segmentation_loss import SegmentationLoss
from medilab.tasks.segmentation_metrics import _pooled_dice, image_scores, pixel_auc
from segmentation_samples import circles_config, write_circles


def probs_of(pred: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    return F.one_hot(pred, num_classes).movedim(-1, 0).float()


def test_perfect_disjoint_and_half_overlap():
    truth = torch.zeros(8, 8, dtype=torch.long)
    truth[:4] = 1  # top half
    perfect = image_scores(probs_of(truth), truth)
    assert perfect["dice"] == 1 and perfect["iou"] == 1 and perfect["pixel_error"] == 0
    assert perfect["auc"] == 1
    disjoint = image_scores(probs_of(1 - truth), truth)
    assert disjoint["dice"] == 0 and disjoint["iou"] == 0 and disjoint["pixel_error"] == 1
    left = torch.zeros(8, 8, dtype=torch.long)
    left[:, :4] = 1  # left half: 16 of 32 pixels shared
    half = image_scores(probs_of(left), truth)
    assert half["dice"] == pytest.approx(0.5)
    assert half["iou"] == pytest.approx(1 / 3)
    assert half["pixel_error"] == pytest.approx(0.5)


def test_field_of_view_restricts_the_scores():
    truth = torch.zeros(8, 8, dtype=torch.long)
    truth[2:6, 2:6] = 1
    pred = truth.clone()
    pred[0, :] = 1  # false positives in the first row only
    fov = torch.ones(8, 8)
    fov[0] = 0
    everywhere = image_scores(probs_of(pred), truth)
    inside = image_scores(probs_of(pred), truth, fov)
    assert everywhere["dice"] == pytest.approx(32 / 40)
    assert everywhere["pixel_error"] == pytest.approx(8 / 64)
    assert inside["dice"] == 1 and inside["pixel_error"] == 0


def test_empty_ground_truth_rule():
    empty = torch.zeros(6, 6, dtype=torch.long)
    assert image_scores(probs_of(empty), empty, with_auc=False) == {
        "dice": 1.0, "iou": 1.0, "pixel_error": 0.0}
    spot = empty.clone()
    spot[0, 0] = 1
    scores = image_scores(probs_of(spot), empty)
    assert scores["dice"] == 0 and scores["iou"] == 0
    assert np.isnan(scores["auc"])  # one class only: AUC undefined


def test_multiclass_dice_per_class():
    truth = torch.tensor([[0, 1, 1, 2, 2, 2]])
    pred = torch.tensor([[0, 1, 1, 2, 2, 0]])
    scores = image_scores(probs_of(pred, 3), truth)
    assert scores["dice_1"] == 1 and scores["dice_2"] == pytest.approx(0.8)
    assert scores["dice"] == pytest.approx(0.9) and "auc" not in scores
    assert scores["iou_1"] == 1 and scores["iou_2"] == pytest.approx(2 / 3)


def test_pixel_auc_known_value_and_sampling():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    target = torch.tensor([0, 0, 1, 1])
    assert pixel_auc(scores, target) == pytest.approx(0.75)
    big = torch.rand(300_000, generator=torch.Generator().manual_seed(0))
    assert pixel_auc(big, (big > 0.5).long(), seed=3) == 1.0


def test_losses_match_monai_and_torch_and_ignore_outside_fov():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 6, 7)
    target = torch.randint(0, 2, (2, 6, 7))
    ours = SegmentationLoss("dice_ce", 2)(logits, target)
    monai = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
    assert ours.item() == pytest.approx(monai(logits, target[:, None]).item(), rel=1e-5)
    weights = [0.2, 0.8]
    ce = SegmentationLoss("cross_entropy", 2, weights)(logits, target)
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights))
    assert ce.item() == pytest.approx(expected.item(), rel=1e-5)
    valid = torch.ones(2, 6, 7)
    valid[:, :, :3] = 0
    changed = logits.clone()
    changed[..., :3] = 50 * torch.randn(2, 2, 6, 3)
    for name in ("dice", "cross_entropy", "dice_ce"):
        loss = SegmentationLoss(name, 2)
        assert loss(changed, target, valid).item() == pytest.approx(
            loss(logits, target, valid).item(), rel=1e-6)
        assert loss(changed, target).item() != pytest.approx(loss(logits, target).item())
    perfect = 40.0 * (F.one_hot(target, 2).movedim(-1, 1).float() - 0.5)
    assert SegmentationLoss("dice", 2)(perfect, target).item() < 1e-4


def test_pooled_dice_sums_counts_over_images():
    counts = np.array([[8, 2, 0], [0, 0, 10], [2, 0, 0]], float)
    assert _pooled_dice(counts) == pytest.approx(20 / 32)
    assert _pooled_dice(np.zeros((2, 3))) == 1.0


def test_sliding_window_equals_whole_image_forward(tmp_path):
    raw = circles_config(tmp_path)
    raw["inference"].update(roi_size=[23, 30], blend_mode="constant", overlap=0.0)
    config = validate_config(raw)
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, num_classes=2, depth=2, base_width=4)
    module = SegmentationModule(config, model, 2, 1).eval()
    image = torch.randn(1, 1, 23, 30)
    with torch.no_grad():
        assert torch.allclose(module.infer(image), model(image), atol=1e-5)


def test_end_to_end_train_evaluate_predict(tmp_path):
    root = write_circles(tmp_path / "data")
    run_dir = api.train(validate_config(circles_config(root)), run_dir=tmp_path / "run")
    curves = pd.read_csv(run_dir / "metrics.csv")
    losses = curves["train/loss"].dropna().to_numpy()
    assert len(losses) == 4 and losses[-1] < losses[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    val = metrics["splits"]["val"]
    assert set(val) == {"dice", "iou", "auc", "pixel_error", "dice_pooled"}
    assert val["dice"]["value"] > 0.5 and val["auc"]["value"] > 0.9
    assert any("empty" in note for note in metrics["notes"])
    predictions = pd.read_csv(run_dir / "predictions_val.csv", dtype={"sample_id": str})
    assert list(predictions.columns) == ["image", "sample_id", "dice", "iou", "pixel_error",
                                         "auc", "tp", "fp", "fn", "mask", "overlay"]
    tp, fp, fn = predictions[["tp", "fp", "fn"]].sum()
    assert val["dice_pooled"]["value"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert predictions["dice"].mean() == pytest.approx(val["dice"]["value"], abs=1e-5)
    for column in ("mask", "overlay"):
        assert all((run_dir / p).is_file() for p in predictions[column])
    overlay = np.asarray(Image.open(run_dir / predictions["overlay"][0]))
    assert overlay.shape == (24, 28, 3)
    splits = pd.read_csv(run_dir / "splits.csv", dtype={"sample_id": str})
    assert (splits["split"] == "val").sum() == 2

    new = tmp_path / "new"
    new.mkdir()
    tifffile.imwrite(new / "01_test.tif", np.asarray(Image.open(root / "images" / "01.png")))
    out = api.predict(run_dir, new, tmp_path / "out", probabilities=True)
    mask = np.asarray(Image.open(out / "01_test_mask.png"))
    prob = np.asarray(Image.open(out / "01_test_prob.png"))
    assert mask.shape == (24, 28) and set(np.unique(mask)) <= {0, 255}
    assert prob.dtype == np.uint16 and prob.shape == (24, 28)
    assert np.array_equal(mask == 255, prob > 32767)
    truth = np.asarray(Image.open(root / "masks" / "01.png")) > 0
    assert ((mask == 255) == truth).mean() > 0.8

    import nibabel as nib

    volume = np.stack([np.asarray(Image.open(root / "images" / f"0{i}.png")) for i in range(3)])
    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.eye(4)), new / "vol.nii.gz")
    api.predict(run_dir, new / "vol.nii.gz", tmp_path / "out3d")
    segmented = nib.load(tmp_path / "out3d" / "vol_mask.nii.gz").get_fdata()
    assert segmented.shape == (28, 24, 3)

    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(new / "colour.png")
    with pytest.raises(InputFileError, match="colour.png: has 3 channel"):
        api.predict(run_dir, new / "colour.png", tmp_path / "out_bad")


def test_pretrained_weights_only_for_a_module_about_to_train(tmp_path, monkeypatch):
    from medilab.data.sources.segmentation_folder import SegmentationFolderSource

    build_datamodule = SegmentationFolderSource().build_datamodule
    from medilab.errors import WeightsUnavailableError
    from medilab.tasks.segmentation import SegmentationFamily

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    raw = circles_config(write_circles(tmp_path / "data", n=3))
    raw["model"] = {"name": "fcn8s", "kwargs": {"pretrained": True, "fc_width": 8}}
    config = validate_config(raw)
    family = SegmentationFamily()
    args = family.model_args(config, build_datamodule(config, None))
    assert args == {"in_channels": 1, "num_classes": 2, "pretrained": True, "fc_width": 8}
    with pytest.raises(WeightsUnavailableError, match="not available offline"):
        family.build_module(config, args, for_training=True)
    # rebuilt from a run folder (weights come from the checkpoint): no pretrained file needed
    module = SegmentationFamily().build_module(config, args, for_training=False)
    assert module.num_classes == 2


def test_3d_volumes_train_and_predict_as_nifti(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:12, :16, :16]
    rows = []
    for i in range(3):
        ball = (z - 6) ** 2 + (y - 8) ** 2 + (x - 8) ** 2 <= 9 + 4 * i
        noisy = ball + rng.normal(0, 0.3, ball.shape)
        np.save(tmp_path / f"img{i}.npy", noisy.astype(np.float32))
        np.save(tmp_path / f"lab{i}.npy", ball.astype(np.uint8))
        rows.append({"image": f"img{i}.npy", "mask": f"lab{i}.npy"})
    pd.DataFrame(rows).to_csv(tmp_path / "volumes.csv", index=False)
    raw = circles_config(tmp_path)
    raw["data"] = {"source": "segmentation_folder", "root": str(tmp_path),
                   "manifest": "volumes.csv", "spatial_dims": 3, "val_count": 1,
                   "patch_size": [8, 8, 8], "patches_per_image": 2, "batch_size": 4}
    del raw["inference"]  # the 2D window; the default is data.patch_size
    raw["trainer"]["max_epochs"] = 1
    run_dir = api.train(validate_config(raw), run_dir=tmp_path / "run")
    saved = json.loads((run_dir / "checkpoints" / "model.json").read_text())
    assert saved["kwargs"]["spatial_dims"] == 3
    predictions = pd.read_csv(run_dir / "predictions_val.csv")
    assert predictions["mask"][0].endswith("_mask.nii.gz")
    assert (run_dir / predictions["overlay"][0]).is_file()
    out = api.predict(run_dir, tmp_path / "img0.npy", tmp_path / "out")
    assert nib.load(out / "img0_mask.nii.gz").shape == (16, 16, 12)  # NIfTI axes x, y, z


def test_mirror_axes_cover_every_flip_combination():
    from medilab.tasks.segmentation import mirror_axes

    assert mirror_axes(2) == [(), (2,), (3,), (2, 3)]
    assert len(mirror_axes(3)) == 8
    assert mirror_axes(2, [1]) == [(), (3,)]  # horizontal flips only
    assert mirror_axes(3, [0, 2]) == [(), (2,), (4,), (2, 4)]



def test_mirror_tta_axes_outside_the_image_are_a_config_error(tmp_path):
    raw = circles_config(tmp_path)
    raw["inference"].update(mirror_tta=True, mirror_tta_axes=[2])
    with pytest.raises(ConfigError, match="mirror_tta_axes.*outside 0..1"):
        validate_config(raw)


def test_mirror_tta_averages_the_flipped_predictions(tmp_path):
    raw = circles_config(tmp_path)
    raw["inference"].update(roi_size=[23, 30], blend_mode="constant", overlap=0.0,
                            mirror_tta=True)
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, num_classes=2, depth=2, base_width=4).eval()
    module = SegmentationModule(validate_config(raw), model, 2, 1)
    image = torch.randn(1, 23, 30)
    with torch.no_grad():
        expected = sum(
            torch.softmax(model(image[None].flip(axes) if axes else image[None]), 1).flip(axes)
            if axes else torch.softmax(model(image[None]), 1)
            for axes in [(), (2,), (3,), (2, 3)]
        ) / 4
        plain = torch.softmax(model(image[None]), 1)
    tta = module.probabilities(image.numpy())
    assert np.allclose(tta, expected[0].numpy(), atol=1e-5)
    assert not np.allclose(tta, plain[0].numpy(), atol=1e-3)


def test_soft_targets_give_the_hard_losses_for_one_hot_maps_and_train():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 7)
    target = torch.randint(0, 3, (2, 6, 7))
    soft = F.one_hot(target, 3).movedim(-1, 1).float()
    valid = torch.ones(2, 6, 7)
    valid[0, :2] = 0
    for name in ("cross_entropy", "dice", "dice_ce"):
        for weights in (None, [0.2, 0.3, 0.5]):
            loss = SegmentationLoss(name, 3, weights)
            assert loss(logits, soft, valid).item() == pytest.approx(
                loss(logits, target, valid).item(), rel=1e-5)
    halves = torch.full((1, 2, 1, 1), 0.5)
    ce = SegmentationLoss("cross_entropy", 2)(torch.zeros(1, 2, 1, 1), halves)
    assert ce.item() == pytest.approx(np.log(2), rel=1e-5)


def test_training_on_soft_labels_lowers_the_loss(tmp_path):
    root = write_circles(tmp_path / "data")
    raw = circles_config(root, trainer={"max_epochs": 3, "monitor": "val/dice",
                                        "monitor_mode": "max", "progress_bar": False})
    raw["data"]["augment"] = {"rotate_degrees": 15, "soft_labels": True}
    run_dir = api.train(validate_config(raw), run_dir=tmp_path / "run", evaluate_after=False)
    losses = pd.read_csv(run_dir / "metrics.csv")["train/loss"].dropna().to_numpy()
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_old_data_keys_resolve_to_the_same_inference_section(tmp_path):
    new = circles_config(tmp_path)
    new["inference"].update(blend_mode="constant", sw_batch_size=2, mirror_tta=True,
                            mirror_tta_axes=[1])
    old = circles_config(tmp_path)
    old["data"].update(old.pop("inference"), blend_mode="constant", sw_batch_size=2,
                       mirror_tta=True, mirror_tta_axes=[1])
    with pytest.warns(FutureWarning, match=r"data.roi_size is deprecated; set "
                      r"inference.roi_size instead"):
        moved = validate_config(old)
    assert moved.model_dump() == validate_config(new).model_dump()
    assert moved.inference.model_dump() == {  # type: ignore[attr-defined]
        "roi_size": [16, 16], "overlap": 0.5, "blend_mode": "constant", "sw_batch_size": 2,
        "mirror_tta": True, "mirror_tta_axes": [1]}
    assert "roi_size" not in moved.data.model_dump()


def test_an_old_key_given_by_override_is_moved_too(tmp_path):
    raw = circles_config(tmp_path)
    del raw["inference"]
    with pytest.warns(FutureWarning, match="set inference.overlap"):
        config = validate_config(apply_overrides(raw, ["data.overlap=0.1"]))
    assert config.inference.overlap == 0.1  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"field 'inference.overlap'.*\(from -o data.overlap=2\)"):
        validate_config(apply_overrides(raw, ["data.overlap=2"]), overrides=["data.overlap=2"])


def test_an_option_set_in_both_places_is_refused(tmp_path):
    raw = circles_config(tmp_path)
    raw["data"]["overlap"] = 0.1
    with pytest.raises(ConfigError, match="data.overlap and inference.overlap are both set"):
        validate_config(raw)


def test_a_misspelled_inference_key_is_a_one_line_error(tmp_path):
    raw = circles_config(tmp_path)
    raw["inference"]["overlapp"] = 0.1
    with pytest.raises(ConfigError) as error:
        validate_config(raw, origin="lab.yaml")
    assert str(error.value) == "lab.yaml: unknown key 'inference.overlapp'"


def test_inference_defaults_and_belongs_to_segmentation_only(tmp_path):
    raw = circles_config(tmp_path)
    del raw["inference"]
    defaults = validate_config(raw).inference  # type: ignore[attr-defined]
    assert (defaults.roi_size, defaults.overlap, defaults.blend_mode) == (None, 0.25, "gaussian")
    raw["inference"] = {"roi_size": [16, 16, 16]}
    with pytest.raises(ConfigError, match=r"inference.roi_size: \[16, 16, 16\] is not 2D"):
        validate_config(raw)
    other = {"task": "classification", "data": {"source": "sklearn_digits"},
             "model": {"name": "simple_nn"}, "inference": {"overlap": 0.5}}
    with pytest.raises(ConfigError, match="unknown key 'inference'"):
        validate_config(other)
