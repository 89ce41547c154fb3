"""The model registry: every builder names its arguments, so typos are refused."""

import inspect

import pytest

from medilab.errors import ConfigError
from medilab.models import available_models, create_model
from medilab.models.registry import MODELS


def test_only_detectors_take_open_kwargs():
    """Detectors pass options on to torchvision's FasterRCNN and check them themselves."""
    open_kwargs = [name for name in available_models()
                   if any(p.kind is inspect.Parameter.VAR_KEYWORD
                          for p in inspect.signature(MODELS.get(name)).parameters.values())]
    assert open_kwargs and all(name.startswith("fasterrcnn") for name in open_kwargs)


@pytest.mark.parametrize("name", available_models())
def test_every_builder_refuses_an_unknown_kwarg(name):
    with pytest.raises(ConfigError, match=f"model.kwargs.widthz: unknown argument for model "
                                          f"'{name}'"):
        create_model(name, in_channels=1, num_classes=2, widthz=3)
