"""Chat models behind an OpenAI-compatible API (OpenAI itself, vLLM, ``transformers serve``...).

Exactly one retry layer: the OpenAI SDK's own retries are off (``max_retries=0``) and every call
has a time-out (``ChatOpenAI`` with no ``timeout`` can hang forever); tenacity retries what is
worth retrying -- rate limits (except an exhausted quota), time-outs, connection errors and 5xx --
honouring ``Retry-After``, and stops as its :class:`RetryPolicy` says. Anything else
(400, 401, 403, 404...) fails at once. Every failure surfaces as a one-line :class:`ModelError`
with the API key redacted.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import openai
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
)
from tenacity.stop import stop_base

from models.base import (
    Capabilities,
    Generation,
    ModelBackend,
    ModelConfigError,
    ModelError,
    RenderedPrompt,
    Sample,
    Usage,
)
from prompts.chat import ChatRenderer

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

logger = logging.getLogger(__name__)

_RETRYABLE = (
    openai.RateLimitError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.InternalServerError,
)
# Things that look like credentials, redacted from messages even when they are not *our* key.
_SECRET_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9_\-*.]{4,}"),
    re.compile(r"(?i)bearer\s+\S+"),
)
_MAX_MESSAGE = 300


def redact(text: str, secret: str | None) -> str:
    """Remove ``secret`` and anything key-like from ``text``.

    Args:
        text: Any message that might be shown or logged.
        secret: The API key in use (may be empty).

    Returns:
        The text with the key (and fragments of it of 8+ characters, as servers echo partial
        keys) and ``sk-...`` / ``Bearer ...`` tokens replaced by ``***``.
    """
    if secret:
        text = text.replace(secret, "***")
        # OpenAI echoes a wrong key partially ("sk-abc*****wxyz"): hide long pieces of it too.
        for size in (16, 8):
            if len(secret) > size:
                for i in range(0, len(secret) - size + 1):
                    piece = secret[i : i + size]
                    if piece in text:
                        text = text.replace(piece, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("***", text)
    return text


def _is_quota_error(exc: BaseException) -> bool:
    """A 429 that will not go away by waiting: the account has no credit left."""
    if not isinstance(exc, openai.RateLimitError):
        return False
    code = getattr(exc, "code", None)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            code = code or err.get("code") or err.get("type")
    return code == "insufficient_quota" or "insufficient_quota" in str(exc)


def _should_retry(exc: BaseException) -> bool:
    return isinstance(exc, _RETRYABLE) and not _is_quota_error(exc)


def _retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``/``retry-after-ms``), if it did."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)  # an HTTP date
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _error_kind(exc: BaseException | None) -> str:
    """The SDK's error class name (``RateLimitError``...), not langchain's wrapper of it."""
    if exc is None:
        return "?"
    kind = next((c.__name__ for c in type(exc).__mro__ if c.__module__.startswith("openai")), None)
    return kind or type(exc).__name__


class _StopAtDeadline(stop_base):
    """Stop rather than sleep into an attempt that would start past the deadline."""

    def __init__(self, start: float, deadline_s: float | None) -> None:
        self.start = start
        self.deadline_s = deadline_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.deadline_s is None:
            return False
        waited = time.monotonic() - self.start + (retry_state.upcoming_sleep or 0.0)
        return waited >= self.deadline_s


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How one call waits and retries: the backend's only retry layer (the SDK's own is off).

    Raises:
        ModelConfigError: On nonsensical limits.
    """

    timeout_s: float = 60
    """Time-out of one HTTP request."""
    max_attempts: int = 4
    """Most attempts per request (1 = no retries)."""
    max_wait_s: float = 30
    """Longest wait between attempts (caps ``Retry-After`` too)."""
    backoff_s: float = 1.0
    """First exponential back-off wait when the server gives no ``Retry-After``."""
    deadline_s: float | None = None
    """Give up retrying once this many seconds have passed since the call began."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.timeout_s <= 0 or self.max_wait_s < 0:
            raise ModelConfigError(
                "OpenAI backend needs max_attempts >= 1, timeout_s > 0 and max_wait_s >= 0"
            )


class OpenAIBackend(ModelBackend):
    """A chat model behind an OpenAI-compatible ``/v1/chat/completions``.

    Args:
        model: Model name sent in requests (for ``transformers serve``: the served path).
        base_url: API base URL (``None``: the OpenAI default).
        api_key: The API key; never logged or shown.
        retry: Time-outs, attempts, waits and the deadline of one call.
        logprobs: Ask for token log-probabilities (servers may ignore it).
        price_per_mtok: ``(input, output)`` US dollars per million tokens, for cost accounting.

    Raises:
        ModelConfigError: On an empty model name or key.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        api_key: str,
        retry: RetryPolicy = RetryPolicy(),
        logprobs: bool = False,
        price_per_mtok: tuple[float, float] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ModelConfigError("empty OpenAI model name: use openai:MODEL, e.g. openai:gpt-4o-mini")
        if not api_key:
            raise ModelConfigError("no OpenAI API key: set OPENAI_API_KEY (or MOCKINGBIRD_OPENAI_API_KEY)")
        from langchain_openai import ChatOpenAI

        self.model = model
        self.name = f"openai:{model}"
        self.capabilities = Capabilities(logprobs=logprobs)
        self.renderer = ChatRenderer()
        self.retry = retry
        self.logprobs = logprobs
        self.price_per_mtok = price_per_mtok
        self._api_key = api_key
        self._llm = ChatOpenAI(
            model=model,
            base_url=base_url,
            api_key=SecretStr(api_key),
            max_retries=0,  # tenacity below is the only retry layer
            timeout=float(retry.timeout_s),
            use_responses_api=False,  # compatible servers speak chat completions only
            logprobs=True if logprobs else None,
        )

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.model!r})"

    # -- generation -------------------------------------------------------------------------

    def generate(
        self,
        prompt: RenderedPrompt,
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> Generation:
        """Sample ``n`` completions; see :meth:`ModelBackend.generate`.

        ``n`` is requested in one call; servers that return fewer choices (many ignore ``n``)
        get further calls for the rest.

        Raises:
            ModelError: One line, key redacted, after retries.
        """
        if n < 1:
            raise ModelError("n must be at least 1")
        messages = self._messages(prompt)
        start = time.monotonic()
        samples: list[Sample] = []
        usage = Usage()
        while len(samples) < n:
            want = n - len(samples)
            kwargs: dict[str, Any] = {
                "temperature": float(temperature),
                "max_tokens": int(max_new_tokens or prompt.max_new_tokens),
            }
            if want > 1:
                kwargs["n"] = want
            if seed is not None:
                # A different seed per follow-up call, or a seeded server repeats itself.
                kwargs["seed"] = int(seed) + len(samples)
            got, call_usage = self._call(messages, prompt.stop or None, kwargs, start)
            usage = usage + call_usage
            if not got:
                raise ModelError(f"{self.name}: the server returned no choices")
            samples.extend(got[:want])
        return Generation(samples=samples, usage=usage, seconds=time.monotonic() - start)

    def _messages(self, prompt: RenderedPrompt) -> list[BaseMessage]:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        if prompt.messages:
            kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
            out = []
            for msg in prompt.messages:
                if msg.role not in kinds:
                    raise ModelError(f"{self.name}: unsupported message role {msg.role!r}")
                out.append(kinds[msg.role](content=msg.content))
            return out
        if prompt.text is not None:
            return [HumanMessage(content=prompt.text)]
        raise ModelError(f"{self.name}: the prompt has neither messages nor text")

    def _call(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any], start: float
    ) -> tuple[list[Sample], Usage]:
        """One request (``n`` choices), retried as the module docstring says.

        The ``wait`` strategy is the server's ``Retry-After`` (capped by ``max_wait_s``), else an
        exponential back-off from ``backoff_s`` with jitter on the upper half.
        """
        attempts, policy = 0, self.retry

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = _retry_after_s(exc) if exc is not None else None
            if hinted is not None:
                return min(hinted, policy.max_wait_s)
            # Jitter so that clients rate-limited together do not retry together.
            base = min(policy.max_wait_s, policy.backoff_s * 2 ** (state.attempt_number - 1))
            return base / 2 + random.uniform(0, base / 2)

        stop_rule = stop_any(
            stop_after_attempt(policy.max_attempts), _StopAtDeadline(start, policy.deadline_s)
        )
        retrying = Retrying(
            retry=retry_if_exception(_should_retry),
            stop=stop_rule,
            wait=wait,
            reraise=True,
            before_sleep=lambda s: logger.warning(
                "%s: attempt %d failed (%s), retrying in %.1fs",
                self.name,
                s.attempt_number,
                _error_kind(s.outcome.exception()) if s.outcome else "?",
                s.upcoming_sleep,
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    call_kwargs = dict(kwargs)
                    if policy.deadline_s is not None:
                        left = policy.deadline_s - (time.monotonic() - start)
                        if left <= 0:
                            raise ModelError(f"{self.name}: deadline of {policy.deadline_s:g}s passed")
                        # The last attempt may not run past the deadline either.
                        call_kwargs["timeout"] = min(policy.timeout_s, left)
                    result = self._llm.generate([messages], stop=stop, **call_kwargs)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(self._describe(exc, attempts)) from None
        return self._read(result)

    def _read(self, result: Any) -> tuple[list[Sample], Usage]:
        samples = []
        for gen in result.generations[0]:
            text = gen.text if isinstance(gen.text, str) else str(gen.text)
            token_lps = None
            info = gen.generation_info or {}
            lp = info.get("logprobs") or gen.message.response_metadata.get("logprobs")
            if self.logprobs and isinstance(lp, dict) and lp.get("content"):
                token_lps = [float(t["logprob"]) for t in lp["content"] if t.get("logprob") is not None]
            samples.append(
                Sample(
                    text=text,
                    logprob=sum(token_lps) if token_lps is not None else None,
                    token_logprobs=token_lps,
                )
            )
        # One usage record per call: every message repeats the whole call's usage_metadata.
        token_usage = (result.llm_output or {}).get("token_usage") or {}
        prompt_tokens = int(token_usage.get("prompt_tokens") or 0)
        completion_tokens = int(token_usage.get("completion_tokens") or 0)
        if not token_usage and result.generations[0]:
            meta = getattr(result.generations[0][0].message, "usage_metadata", None) or {}
            prompt_tokens = int(meta.get("input_tokens") or 0)
            completion_tokens = int(meta.get("output_tokens") or 0)
        cost = 0.0
        if self.price_per_mtok is not None:
            cost = (prompt_tokens * self.price_per_mtok[0] + completion_tokens * self.price_per_mtok[1]) / 1e6
        return samples, Usage(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, requests=1, cost_usd=cost
        )

    def _describe(self, exc: BaseException, attempts: int) -> str:
        """One line for the user: what failed, after how many attempts, never the key."""
        status = getattr(exc, "status_code", None)
        kind = _error_kind(exc)
        if isinstance(exc, openai.APIStatusError):
            detail = getattr(exc, "message", "") or str(exc)
        else:
            detail = str(exc)
        hint = ""
        if isinstance(exc, openai.AuthenticationError):
            hint = " (check OPENAI_API_KEY)"
        elif _is_quota_error(exc):
            hint = " (insufficient quota: not retried)"
        where = f"HTTP {status} " if status else ""
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        return redact(_one_line(f"{self.name}: {where}{kind} {tries}{hint}: {detail}"), self._api_key)
