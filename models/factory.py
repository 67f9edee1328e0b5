"""Build a model backend from a spec string: ``embedded``, ``hf:PATH`` or ``openai:MODEL``.

Local models are cached per ``(spec, device)`` for the life of the process, so repeated graph
runs (a benchmark, a notebook) do not reload weights; :func:`clear_model_cache` empties the cache.
Remote backends are cheap to build and are not cached.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from models.base import ModelBackend, ModelConfigError

if TYPE_CHECKING:  # only for the type: the backend module is imported where a backend is built
    from models.hf_backend import HFBackend

logger = logging.getLogger(__name__)

API_KEY_ENV = ("MOCKINGBIRD_OPENAI_API_KEY", "OPENAI_API_KEY")
BASE_URL_ENV = ("MOCKINGBIRD_OPENAI_BASE_URL", "OPENAI_BASE_URL")
SPEC_HELP = (
    "expected embedded, hf:PATH or openai:MODEL (random:embedded / random:hf:PATH for an untrained control)"
)
#: Prefix of a local spec that keeps the checkpoint's shape but not its weights (the control).
RANDOM_PREFIX = "random:"

_cache: dict[tuple[str, str], ModelBackend] = {}
_cache_lock = threading.Lock()


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def load_model(
    spec: str,
    *,
    openai_base_url: str | None = None,
    openai_api_key: str | None = None,
    timeout_s: float = 60.0,
    max_attempts: int = 4,
    device: str = "cpu",
) -> ModelBackend:
    """Load (or fetch from the cache) the backend named by ``spec``.

    Args:
        spec: ``embedded``, ``hf:PATH`` or ``openai:MODEL``.
        openai_base_url: Base URL of an OpenAI-compatible server; defaults to
            ``MOCKINGBIRD_OPENAI_BASE_URL`` or ``OPENAI_BASE_URL``, else OpenAI itself.
        openai_api_key: API key; defaults to ``MOCKINGBIRD_OPENAI_API_KEY`` or ``OPENAI_API_KEY``.
        timeout_s: Deadline of one logical call of a remote model (every attempt, and the waits
            between them, within it).
        max_attempts: Attempts per remote request (retries included).
        device: torch device for local models.

    Returns:
        The backend.

    Raises:
        ModelConfigError: One line, on an unknown spec, a missing path or a missing key.
    """
    spec = (spec or "").strip()
    if spec.startswith("openai:"):
        return _openai(spec, openai_base_url, openai_api_key, timeout_s, max_attempts)
    local = spec.removeprefix(RANDOM_PREFIX)
    if local != "embedded" and not local.startswith("hf:"):
        raise ModelConfigError(f"unknown model {spec!r}: {SPEC_HELP}")
    key = (spec, device)
    with _cache_lock:  # one load per key even when graph runs start in parallel threads
        if key not in _cache:
            _cache[key] = _local(spec, device)
        return _cache[key]


def clear_model_cache() -> None:
    """Forget every cached local model (tests; freeing memory)."""
    with _cache_lock:
        _cache.clear()


def _local(spec: str, device: str) -> ModelBackend:
    from models.hf_backend import HFBackend

    random_init = spec.startswith(RANDOM_PREFIX)
    name, spec = spec, spec.removeprefix(RANDOM_PREFIX)
    if spec == "embedded":
        from models.embedded import EMBEDDED_DIR

        if not Path(EMBEDDED_DIR).is_dir():
            raise ModelConfigError(
                f"the embedded model is not built yet (no {EMBEDDED_DIR}): "
                "train it, or use hf:PATH or openai:MODEL"
            )
        backend = HFBackend(EMBEDDED_DIR, device=device, name=name, random_init=random_init)
        _attach_table_model(backend, name, device, random_init)
        return backend
    path = spec[len("hf:") :].strip()
    if not path:
        raise ModelConfigError(f"empty path in model {spec!r}: {SPEC_HELP}")
    return HFBackend(Path(path), device=device, name=name, random_init=random_init)


def _attach_table_model(backend: HFBackend, name: str, device: str, random_init: bool) -> None:
    """Let ``embedded`` answer tables with the shipped table checkpoint (loaded on first use).

    A character-level decoder does not learn tables in context on a CPU budget; the table model
    (:mod:`models.table_model`) reads the same compact text with one token per row. Its name is
    ``embedded[tabular]`` so its evidence and costs are kept apart from the text model's.
    """
    from models.embedded import EMBEDDED_TABULAR_DIR
    from models.hf_backend import HFBackend

    if not Path(EMBEDDED_TABULAR_DIR).is_dir():
        return
    key = (f"{name}[tabular]", device)

    def load() -> ModelBackend:
        with _cache_lock:
            if key not in _cache:
                _cache[key] = HFBackend(
                    EMBEDDED_TABULAR_DIR, device=device, name=key[0], random_init=random_init
                )
            return _cache[key]

    backend.specialists["tabular"] = load


def _openai(
    spec: str, base_url: str | None, api_key: str | None, timeout_s: float, max_attempts: int
) -> ModelBackend:
    from models.openai_backend import OpenAIBackend, RetryPolicy

    model = spec[len("openai:") :].strip()
    if not model:
        raise ModelConfigError(f"empty model name in {spec!r}: use openai:MODEL, e.g. openai:gpt-4o-mini")
    key = api_key or _first_env(API_KEY_ENV)
    if not key:
        raise ModelConfigError(
            f"model {spec!r} needs an API key: set OPENAI_API_KEY (or MOCKINGBIRD_OPENAI_API_KEY)"
        )
    return OpenAIBackend(
        model,
        base_url=base_url or _first_env(BASE_URL_ENV),
        api_key=key,
        # one deadline per logical call: retries and waits fit inside it
        retry=RetryPolicy(timeout_s=timeout_s, max_attempts=max_attempts, deadline_s=timeout_s),
    )
