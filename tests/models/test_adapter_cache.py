"""The adapter cache: LRU bounds in memory and on disk, reuse without training, never across bases."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from models.adapter_cache import ADAPTERS, AdapterCache, CachedAdapter, adapter_key, backend_key
from models.factory import load_model
from models.ttt import TTTConfig, run_ttt
from tasks.generators import sample_task


class NamedOnly:
    """A backend stand-in without local weights: the cache keys it by its name."""

    def __init__(self, name: str) -> None:
        self.name = name


def adapter(value: float) -> CachedAdapter:
    import torch

    return CachedAdapter(weights={"lora_A": torch.full((2, 2), value)}, meta={"value": value})


pytestmark = pytest.mark.usefixtures("no_cached_adapters")


def small_cfg(**kw) -> TTTConfig:
    return TTTConfig(**{"steps": 3, "batch_size": 2, "train_views": 2, "predict_views": 2, **kw})


def test_memory_is_least_recently_used_first_out():
    cache, model = AdapterCache(), NamedOnly("m")
    for i, key in enumerate(["a", "b", "c"]):
        cache.put(model, key, adapter(i), capacity=2)
    assert cache.keys(model) == ["b", "c"]  # "a" evicted
    assert cache.get(model, "b", capacity=2) is not None  # "b" is now the most recent
    cache.put(model, "d", adapter(3), capacity=2)
    assert cache.keys(model) == ["b", "d"]
    assert cache.get(model, "c", capacity=2) is None


def test_capacity_zero_stores_nothing():
    cache, model = AdapterCache(), NamedOnly("m")
    cache.put(model, "a", adapter(1), capacity=0)
    assert cache.keys(model) == [] and cache.get(model, "a", capacity=4) is None


def test_disk_files_are_bounded_and_reload_in_a_fresh_cache(tmp_path: Path):
    import torch

    model = NamedOnly("m")
    writer = AdapterCache()
    for i, key in enumerate(["a", "b", "c"]):
        writer.put(model, key, adapter(float(i)), capacity=2, directory=str(tmp_path))
    files = sorted(p.name for p in tmp_path.rglob("*.safetensors"))
    assert files == ["b.safetensors", "c.safetensors"]
    reader = AdapterCache()  # a later process: nothing in memory
    hit = reader.get(model, "c", capacity=2, directory=str(tmp_path))
    assert hit is not None and hit.meta == {"value": 2.0}
    assert torch.equal(hit.weights["lora_A"], torch.full((2, 2), 2.0))
    assert reader.get(model, "a", capacity=2, directory=str(tmp_path)) is None
    assert reader.keys(model) == ["c"]  # a disk hit is held in memory too


def test_an_unreadable_file_is_a_miss_not_an_error(tmp_path: Path):
    model = NamedOnly("m")
    AdapterCache().put(model, "a", adapter(1.0), capacity=2, directory=str(tmp_path))
    [path] = list(tmp_path.rglob("a.safetensors"))
    path.write_bytes(b"not a safetensors file")
    assert AdapterCache().get(model, "a", capacity=2, directory=str(tmp_path)) is None


def test_keys_change_with_demonstrations_and_training_settings():
    task = sample_task(random.Random(0), "mirror", n_train=3)
    settings = small_cfg().training_settings()
    key = adapter_key(task, settings)
    assert adapter_key(task, dict(settings)) == key
    other_demo = task.model_copy(update={"train": task.train[:2]})
    assert adapter_key(other_demo, settings) != key
    assert adapter_key(task, {**settings, "lr": 1e-3}) != key
    assert adapter_key(task, small_cfg(predict_views=7).training_settings()) == key  # prediction only
    assert key.startswith(task.id.replace("/", "_")[:10])


def test_a_second_query_of_the_same_task_reuses_the_adapter(tiny):
    task = sample_task(random.Random(4), "recolour_all", n_train=3)
    steps: list[int] = []
    cfg = small_cfg(cache=2)
    first = run_ttt(tiny, task, task.test[0].input, cfg, on_step=lambda s, *_: steps.append(s))
    assert steps == [1, 2, 3] and not first.reused
    second = run_ttt(tiny, task, task.test[0].input, cfg, on_step=lambda s, *_: steps.append(s))
    assert steps == [1, 2, 3] and second.reused and second.steps_run == 0  # no training step
    assert second.answers == first.answers and second.sequences == first.sequences
    changed = task.model_copy(update={"train": [*task.train[1:], task.train[0]]})
    third = run_ttt(tiny, changed, task.test[0].input, cfg)
    assert not third.reused and third.steps_run == 3  # other demonstrations: another adapter


def test_reuse_from_disk_after_the_memory_is_gone(tiny, tmp_path: Path):
    task = sample_task(random.Random(4), "recolour_all", n_train=3)
    cfg = small_cfg(cache=1, cache_dir=str(tmp_path))
    first = run_ttt(tiny, task, task.test[0].input, cfg)
    ADAPTERS.clear()  # as in a new process
    second = run_ttt(tiny, task, task.test[0].input, cfg)
    assert second.reused and second.answers == first.answers
    other = sample_task(random.Random(5), "recolour_all", n_train=3)
    run_ttt(tiny, other, other.test[0].input, cfg)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1  # bounded on disk too


def test_the_cache_never_crosses_base_models(tiny, tiny_checkpoint):
    control = load_model(f"random:hf:{tiny_checkpoint}")  # same shape and name stem, other weights
    assert backend_key(control) != backend_key(tiny)
    task = sample_task(random.Random(4), "recolour_all", n_train=3)
    cfg = small_cfg(cache=4)
    run_ttt(tiny, task, task.test[0].input, cfg)
    on_control = run_ttt(control, task, task.test[0].input, cfg)
    assert not on_control.reused and on_control.steps_run == 3
    assert run_ttt(tiny, task, task.test[0].input, cfg).reused
