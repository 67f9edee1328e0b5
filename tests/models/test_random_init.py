"""The random-initialisation control: same shape and renderer, fresh weights."""

from __future__ import annotations

import pytest
import torch

from models.base import ModelConfigError
from models.factory import clear_model_cache, load_model


def test_random_control_has_the_shape_but_not_the_weights(tiny_checkpoint):
    clear_model_cache()
    trained = load_model(f"hf:{tiny_checkpoint}")
    control = load_model(f"random:hf:{tiny_checkpoint}")
    assert control.name == f"random:hf:{tiny_checkpoint}"
    assert control.renderer.name == trained.renderer.name
    a = dict(trained.model.named_parameters())
    b = dict(control.model.named_parameters())
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    again = load_model(f"random:hf:{tiny_checkpoint}")
    assert again is control  # cached like any local model


def test_random_prefix_needs_a_local_model():
    with pytest.raises(ModelConfigError, match="unknown model"):
        load_model("random:openai:gpt-4o")
