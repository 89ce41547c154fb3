import numpy as np
import pytest
import torch
from torch import nn

from medilab.errors import ConfigError
from medilab.models import create_model
from medilab.models.fusion import LateFusion, SliceSelector, fit_late_weights, slice_indices

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {"widths": [4, 8], "dropout": 0.0}


def _indexed_volume(n: int = 2, depth: int = 8, size: int = 6) -> torch.Tensor:
    """A volume whose slice i along D holds the value i everywhere."""
    values = torch.arange(depth, dtype=torch.float32)[None, None, :, None, None]
    return values.expand(n, 1, depth, size, size).clone()


def _create(name: str, **kwargs) -> nn.Module:
    return create_model(
        name, in_channels=1, num_classes=2, image_size=[8, 16, 16], num_covariates=0, **kwargs
    )


def test_slice_indices_centre_and_replicated_edges():
    assert slice_indices(8, 1) == [4]
    assert slice_indices(8, 3) == [3, 4, 5]
    assert slice_indices(8, 6) == [1, 2, 3, 4, 5, 6]
    assert slice_indices(8, 5, index=0) == [0, 0, 0, 1, 2]
    assert slice_indices(8, 4, index=7) == [5, 6, 7, 7]
    with pytest.raises(ConfigError, match="index"):
        slice_indices(8, 3, index=8)


def test_selector_picks_slices_along_each_axis():
    volume = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 1, 4, 5, 6)
    assert torch.equal(SliceSelector(3, axis=0)(volume)[0], volume[0, 0, 1:4])
    along_h = SliceSelector(2, axis=1)(volume)
    assert along_h.shape == (1, 2, 4, 6)
    assert torch.equal(along_h[0, 0], volume[0, 0, :, 1, :])
    along_w = SliceSelector(1, axis=2, index=5)(volume)
    assert torch.equal(along_w[0, 0], volume[0, 0, :, :, 5])
    with pytest.raises(ConfigError, match="axis"):
        SliceSelector(1, axis=3)


def test_early_fusion_sees_the_right_slices_as_channels():
    model = _create("fusion_early", slices=6, backbone_kwargs=TINY)
    seen = {}
    model.backbone.register_forward_pre_hook(lambda _, args: seen.update(x=args[0]))
    model(_indexed_volume())
    assert seen["x"].shape == (2, 6, 6, 6)
    assert seen["x"][0, :, 0, 0].tolist() == [1, 2, 3, 4, 5, 6]
    assert model.backbone.features[0][0].in_channels == 6


def test_single_uses_centre_slice_with_one_channel():
    model = _create("fusion_single", backbone_kwargs=TINY)
    seen = {}
    model.backbone.register_forward_pre_hook(lambda _, args: seen.update(x=args[0]))
    assert model(_indexed_volume()).shape == (2, 2)
    assert seen["x"].shape == (2, 1, 6, 6)
    assert torch.all(seen["x"] == 4)


def test_late_fusion_one_hot_weights_equal_first_slice_model():
    model = _create(
        "fusion_late", slices=3, shared=False, fusion_weights=[1, 0, 0], backbone_kwargs=TINY
    )
    model.eval()
    volume = torch.randn(3, 1, 8, 16, 16)
    first = model.members[0](volume[:, :, 3]).log_softmax(1)
    torch.testing.assert_close(model(volume), first)
    assert model.fusion_weights() == [1.0, 0.0, 0.0]


def test_late_fusion_output_is_log_mixture_and_cross_entropy_is_its_nll():
    model = _create(
        "fusion_late", slices=4, shared=True, fusion_weights=[1, 2, 3, 4], backbone_kwargs=TINY
    )
    model.eval()
    volume = torch.randn(5, 1, 8, 16, 16)
    labels = torch.tensor([0, 1, 1, 0, 1])
    probs = model.per_slice_probabilities(volume)
    mixture = (probs * torch.tensor([0.1, 0.2, 0.3, 0.4])[None, :, None]).sum(1)
    output = model(volume)
    torch.testing.assert_close(output.exp(), mixture)
    torch.testing.assert_close(
        nn.functional.cross_entropy(output, labels),
        -mixture[torch.arange(5), labels].log().mean(),
    )


def test_learned_weights_are_trained_and_can_be_set():
    model = _create("fusion_late", slices=3, fusion_weights="learned", backbone_kwargs=TINY)
    assert model.fusion_weights() == pytest.approx([1 / 3] * 3)
    _train(model, steps=5)
    weights = model.fusion_weights()
    assert weights != pytest.approx([1 / 3] * 3, abs=1e-6)
    assert sum(weights) == pytest.approx(1.0)
    model.set_fusion_weights([0.0, 3.0, 1.0])
    assert model.fusion_weights() == pytest.approx([0.0, 0.75, 0.25], abs=1e-6)


def test_weights_from_a_numpy_array_are_normalised():
    model = _create("fusion_late", slices=3, fusion_weights=np.array([1.0, 1.0, 2.0]))
    assert model.fusion_weights() == pytest.approx([0.25, 0.25, 0.5])
    assert not model.weight_logits.requires_grad


def test_bad_weights_are_config_errors():
    with pytest.raises(ConfigError, match="weights"):
        _create("fusion_late", slices=3, fusion_weights=[1, 0])
    with pytest.raises(ConfigError, match="weights"):
        _create("fusion_late", slices=2, fusion_weights="softmax")


def test_fit_late_weights_prefers_the_informative_slice():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    noise = rng.dirichlet([1, 1], size=(200, 3))  # (N, 3, 2): uninformative slices
    informative = np.where(labels[:, None] == 1, [0.1, 0.9], [0.9, 0.1])
    probs = noise.copy()
    probs[:, 1] = 0.8 * informative + 0.2 * noise[:, 1]
    weights = fit_late_weights(probs, labels)
    assert weights.shape == (3,)
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    assert weights.argmax() == 1 and weights[1] > 0.8
    uniform_nll = -np.log(probs[np.arange(200), :, labels].mean(1)).mean()
    fitted_nll = -np.log(probs[np.arange(200), :, labels] @ weights).mean()
    assert fitted_nll < uniform_nll


def _train(model: nn.Module, steps: int) -> list[float]:
    torch.manual_seed(0)
    volumes = torch.randn(8, 1, 8, 16, 16)
    labels = torch.tensor([0, 1] * 4)
    volumes[labels == 1, :, 3:6] += 1.5  # class 1 is brighter in the centre slices
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(volumes), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("fusion_single", {}),
        ("fusion_early", {"slices": 3}),
        ("fusion_late", {"slices": 3, "shared": True}),
        ("fusion_late", {"slices": 2, "shared": False, "fusion_weights": "learned"}),
    ],
)
def test_every_member_trains_on_tiny_volumes(name, kwargs):
    torch.manual_seed(0)
    model = _create(name, backbone_kwargs=TINY, **kwargs)
    before = model.fusion_weights() if isinstance(model, LateFusion) else None
    losses = _train(model, steps=8)
    assert losses[-1] < losses[0]
    assert model(torch.randn(3, 1, 8, 16, 16)).shape == (3, 2)
    if kwargs.get("fusion_weights") == "learned":  # the learned case really learns its weights
        assert model.learned and model.fusion_weights() != pytest.approx(before, abs=1e-6)


def test_late_fusion_with_separate_models_has_one_per_slice():
    shared = _create("fusion_late", slices=4, shared=True, backbone_kwargs=TINY)
    separate = _create("fusion_late", slices=4, shared=False, backbone_kwargs=TINY)
    assert isinstance(shared, LateFusion) and len(shared.members) == 1
    assert len(separate.members) == 4


def test_misspelled_kwarg_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"model.kwargs.slicez: unknown argument for model "
                                          r"'fusion_early' \(it takes: slices"):
        _create("fusion_early", slicez=3)
    with pytest.raises(ConfigError, match="model.kwargs.backbone_kwargs.widht"):
        _create("fusion_late", backbone="convnet", backbone_kwargs={"widht": [4]})
    with pytest.raises(ConfigError, match="takes no covariates"):
        create_model("fusion_single", in_channels=1, num_classes=2, num_covariates=2)
