"""Adapters learned by test-time training, kept so later queries of the same task reuse them.

Training an adapter costs seconds to minutes; a second query of the same task (same task id,
same demonstrations, same settings) would learn the same adapter again. :data:`ADAPTERS` keeps
the LoRA weights (peft state dicts, on the CPU) of recently trained adapters:

- **Keyed per base model.** Entries live under a fingerprint of the backend's base weights
  (:func:`backend_key`), so an adapter is never applied to a model it was not trained on, even
  when two backends share a display name or a checkpoint folder is rebuilt in place.
- **Keyed per task and settings.** :func:`adapter_key` hashes the task id, its demonstrations,
  its notes (they reach the prompt), the task kind and every setting that changes what is trained;
  a changed demonstration or setting is a different adapter.
- **Bounded.** At most ``capacity`` adapters per base model in memory, least recently used
  evicted first; with a ``directory``, also saved there as ``.safetensors`` files (one folder per
  base model, at most ``capacity`` files each, the least recently used deleted first) and reloaded
  by later processes.

Example::

    key = adapter_key(task, settings)
    hit = ADAPTERS.get(model, key, capacity=4, directory="")
    if hit is None:
        ...  # train, then
        ADAPTERS.put(model, key, CachedAdapter(weights=state_dict, meta={...}), capacity=4, directory="")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.schema import Task

logger = logging.getLogger(__name__)

#: Elements sampled from each parameter tensor for the base-model fingerprint: enough to tell two
#: checkpoints (or a checkpoint and its random-initialisation control) apart without reading every
#: weight of a large model.
FINGERPRINT_SAMPLES = 4096
SUFFIX = ".safetensors"

_fingerprints: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_fingerprint_lock = threading.Lock()


@dataclass
class CachedAdapter:
    """One trained adapter: its LoRA weights (CPU tensors) and what its training measured."""

    weights: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def backend_key(model: Any) -> str:
    """A fingerprint of ``model``'s base weights (hex), computed once per backend object.

    Parameter names, shapes, dtypes and a strided sample of each tensor's values go into the hash.
    Must be called while no adapter is attached (the fingerprint is of the base model).
    """
    with _fingerprint_lock:
        known = _fingerprints.get(model)
    if known is not None:
        return known
    net = getattr(model, "model", None)
    digest = hashlib.sha256(type(model).__name__.encode())
    if net is None or not hasattr(net, "named_parameters"):
        # A backend without local weights cannot adapt; its name is all there is to key on.
        digest.update(str(getattr(model, "name", "")).encode())
    else:
        import torch

        with torch.no_grad():
            for name, param in sorted(net.named_parameters(), key=lambda kv: kv[0]):
                flat = param.detach().reshape(-1)
                step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
                sample = flat[::step].to("cpu", torch.float32).contiguous()
                digest.update(f"{name}:{tuple(param.shape)}:{param.dtype}".encode())
                digest.update(sample.numpy().tobytes())
    key = digest.hexdigest()
    with _fingerprint_lock:
        _fingerprints[model] = key
    return key


def adapter_key(task: Task, settings: dict[str, Any]) -> str:
    """The cache key of ``task``'s adapter under ``settings``: ``<task id slug>-<digest>``.

    The digest covers the task id, kind, demonstrations and notes and the training settings, so
    the same task id with other demonstrations (or other settings) never hits. The slug only makes
    file names readable; it is not what makes keys unique.
    """
    payload = {
        "id": task.id,
        "kind": task.kind,
        "train": [e.model_dump(mode="json") for e in task.train],
        "notes": list(task.notes),
        "settings": settings,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", task.id)[:60] or "task"
    return f"{slug}-{digest[:24]}"


class AdapterCache:
    """LRU caches of adapters, one per base model, in memory and optionally on disk (thread-safe)."""

    def __init__(self) -> None:
        self._memory: dict[str, OrderedDict[str, CachedAdapter]] = {}
        self._lock = threading.Lock()

    def get(self, model: Any, key: str, *, capacity: int, directory: str = "") -> CachedAdapter | None:
        """The adapter stored under ``key`` for ``model``'s base weights, or ``None``.

        Memory first, then ``directory`` (a disk hit is loaded into memory). A hit becomes the most
        recently used. ``capacity`` 0 means the cache is off: always ``None``.
        """
        if capacity < 1:
            return None
        base = backend_key(model)
        with self._lock:
            entries = self._memory.get(base)
            if entries is not None and key in entries:
                entries.move_to_end(key)
                return entries[key]
        if not directory:
            return None
        found = self._load(Path(directory) / base[:16] / f"{key}{SUFFIX}")
        if found is not None:
            self._remember(base, key, found, capacity)
        return found

    def put(
        self, model: Any, key: str, adapter: CachedAdapter, *, capacity: int, directory: str = ""
    ) -> None:
        """Store ``adapter`` under ``key`` for ``model``; evict beyond ``capacity`` (0 = store nothing)."""
        if capacity < 1:
            return
        base = backend_key(model)
        self._remember(base, key, adapter, capacity)
        if directory:
            self._save(Path(directory) / base[:16], key, adapter, capacity)

    def keys(self, model: Any) -> list[str]:
        """Keys held in memory for ``model``'s base weights, least recently used first."""
        with self._lock:
            return list(self._memory.get(backend_key(model), {}))

    def clear(self) -> None:
        """Forget every adapter held in memory (files on disk stay)."""
        with self._lock:
            self._memory.clear()

    # -- internals ----------------------------------------------------------------------------

    def _remember(self, base: str, key: str, adapter: CachedAdapter, capacity: int) -> None:
        with self._lock:
            entries = self._memory.setdefault(base, OrderedDict())
            entries[key] = adapter
            entries.move_to_end(key)
            while len(entries) > capacity:
                evicted, _ = entries.popitem(last=False)
                logger.debug("adapter cache: evicted %s from memory", evicted)

    def _save(self, folder: Path, key: str, adapter: CachedAdapter, capacity: int) -> None:
        from safetensors.torch import save_file

        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{key}{SUFFIX}"
            tmp = folder / f".{key}.{os.getpid()}.tmp"
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter.weights.items()}
            save_file(tensors, str(tmp), metadata={"meta": json.dumps(adapter.meta)})
            os.replace(tmp, path)  # readers never see a half-written file
            files = sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in files[capacity:]:
                old.unlink(missing_ok=True)
                logger.debug("adapter cache: deleted %s", old)
        except OSError as exc:
            # The cache is an optimisation: a full disk or a read-only folder must not fail a query.
            logger.warning("adapter cache: cannot save to %s: %s", folder, exc)

    def _load(self, path: Path) -> CachedAdapter | None:
        if not path.is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = json.loads((handle.metadata() or {}).get("meta", "{}"))
                weights = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
            os.utime(path)  # most recently used on disk too
        except (OSError, ValueError, SafetensorError) as exc:
            logger.warning("adapter cache: ignoring unreadable %s: %s", path, exc)
            return None
        return CachedAdapter(weights=weights, meta=meta if isinstance(meta, dict) else {})


#: The process-wide cache (the factory shares one backend per model spec, so one cache serves all).
ADAPTERS = AdapterCache()
