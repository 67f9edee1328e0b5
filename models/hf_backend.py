"""Local causal language models in Hugging Face format (the embedded model and any ``hf:PATH``).

A local model can do everything the graph may ask: sample with per-token log-probabilities,
score given candidates (one batched forward) and carry a temporary LoRA adapter for test-time
training. torch, transformers and peft are imported inside the methods that need them, so
importing this module (and ``--help``, error paths, the OpenAI path) stays fast.

The checkpoint decides how prompts are written: a ``mockingbird.json`` with
``{"format": "compact"}`` marks a model trained on :mod:`prompts.compact`; anything else gets the
role-play chat prompt, through the tokenizer's chat template when it has one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.base import (
    Capabilities,
    Generation,
    ModelBackend,
    ModelConfigError,
    ModelError,
    RenderedPrompt,
    Renderer,
    Sample,
    Usage,
)
from tasks.schema import TaskKind

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MARKER_FILE = "mockingbird.json"
#: Seed of the random-initialisation control (any fixed value; not one a checkpoint was built with).
RANDOM_INIT_SEED = 1234
#: Candidates per forward pass in :meth:`HFBackend.score` (bounds memory, not correctness).
SCORE_BATCH = 64


def read_marker(path: Path) -> dict[str, Any]:
    """The checkpoint's ``mockingbird.json`` (``{}`` when absent).

    Raises:
        ModelConfigError: If the file exists but is not a JSON object.
    """
    marker = path / MARKER_FILE
    if not marker.is_file():
        return {}
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelConfigError(f"cannot read {marker}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{marker} must hold a JSON object")
    return data


def renderer_for(path: Path) -> Renderer:
    """The renderer a checkpoint was trained for (see the module docstring).

    Raises:
        ModelConfigError: On an unknown ``format``.
    """
    marker = read_marker(path)
    fmt = marker.get("format", "chat")
    if fmt == "compact":
        from prompts.compact import CompactRenderer

        return CompactRenderer(indexed=True) if marker.get("indexed") else CompactRenderer()
    if fmt == "chat":
        from prompts.chat import ChatRenderer

        return ChatRenderer()
    raise ModelConfigError(f"{path / MARKER_FILE}: unknown format {fmt!r} (expected 'compact' or 'chat')")


class HFBackend(ModelBackend):
    """A causal LM loaded from a local Hugging Face checkpoint directory.

    Args:
        path: Directory with ``config.json``, weights and tokenizer files.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        name: Display name; defaults to ``hf:<path>``.

    Raises:
        ModelConfigError: If the directory or its config is missing or cannot be loaded.
    """

    def __init__(
        self, path: str | Path, *, device: str = "cpu", name: str | None = None, random_init: bool = False
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ModelConfigError(f"model directory not found: {self.path}")
        if not (self.path / "config.json").is_file():
            raise ModelConfigError(f"not a Hugging Face checkpoint (no config.json): {self.path}")
        self.name = name or f"hf:{path}"
        self.device = device
        self.capabilities = Capabilities(logprobs=True, score=True, adapt=True)
        self.renderer = renderer_for(self.path)
        self._adapter_active = False
        #: Task kind -> a loader of the backend that answers that kind instead (see for_kind).
        self.specialists: dict[str, Callable[[], ModelBackend]] = {}
        # One user of the weights at a time: seeding touches torch's global RNG, and an adapter
        # changes the model in place for every caller (the factory shares one backend per process).
        self._lock = threading.RLock()

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        import models.table_model  # noqa: F401 - registers the table architecture with the Auto classes

        # A library must not draw progress bars on the caller's terminal (the CLI has its own trace).
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            if random_init:
                # The control for "what does pretraining add": same shape, tokenizer and renderer,
                # freshly initialised weights (seeded, so the control is reproducible).
                from models.embedded import random_init_like

                model: Any = random_init_like(self.path, seed=RANDOM_INIT_SEED).to(torch.float32)
            else:
                model = AutoModelForCausalLM.from_pretrained(
                    self.path, local_files_only=True, dtype=torch.float32
                )
            self._model = model.to(device).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            msg = " ".join(str(exc).split())[:300]
            raise ModelConfigError(f"cannot load model from {self.path}: {msg}") from None
        self._eos_id = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (self._eos_id if self._eos_id is not None else 0)
        logger.info("loaded %s (%d parameters) on %s", self.name, self.num_parameters(), device)

    @property
    def model(self) -> Any:
        """The underlying transformers model (with an adapter's layers while one is active)."""
        return self._model

    def for_kind(self, kind: TaskKind) -> ModelBackend:
        """A specialist checkpoint for ``kind`` when one was attached (loaded on first use), else self."""
        loader = self.specialists.get(kind)
        return loader() if loader is not None else self

    def num_parameters(self) -> int:
        """Number of parameters of the base model."""
        return sum(p.numel() for p in self._model.parameters())

    def __repr__(self) -> str:
        return f"HFBackend({str(self.path)!r}, device={self.device!r})"

    # -- prompts ----------------------------------------------------------------------------

    def encode_prompt(self, prompt: RenderedPrompt) -> list[int]:
        """Token ids of a rendered prompt, special tokens included.

        Raw text is tokenized as is (the tokenizer adds its ``bos``); chat messages go through the
        tokenizer's chat template, or are joined by blank lines when it has none.

        Raises:
            ModelError: If the prompt is empty.
        """
        tok = self.tokenizer
        if prompt.messages:
            messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
            if getattr(tok, "chat_template", None):
                text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                ids = tok(text, add_special_tokens=False)["input_ids"]  # the template adds them
            else:
                ids = tok("\n\n".join(m["content"] for m in messages) + "\n")["input_ids"]
        elif prompt.text is not None:
            ids = tok(prompt.text)["input_ids"]
        else:
            raise ModelError(f"{self.name}: the prompt has neither messages nor text")
        if not ids:
            raise ModelError(f"{self.name}: the prompt encodes to no tokens")
        return list(ids)

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
        """Sample ``n`` completions in one batch; see :meth:`ModelBackend.generate`.

        Greedy decoding (``temperature == 0``) computes one sequence and copies it. A completion
        ends at ``eos`` or at the first stop string, which is cut from the text; its tokens stay in
        ``token_logprobs`` (so a greedy sample's log-prob equals :meth:`score` of its text plus the
        stop string). Log-probs are the model's own (temperature 1), whatever ``temperature``.
        ``Usage.prompt_tokens`` counts the prompt once; ``completion_tokens`` the tokens computed.
        """
        import torch

        if n < 1:
            raise ModelError("n must be at least 1")
        start = time.monotonic()
        prompt_ids = self.encode_prompt(prompt)
        greedy = temperature <= 0
        rows = 1 if greedy else n
        max_new = int(max_new_tokens or prompt.max_new_tokens)
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device).expand(rows, -1)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": self._pad_id,
            "eos_token_id": self._eos_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if greedy:
            gen_kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        else:
            # Sample from the plain temperature-scaled distribution: no top-k/top-p defaults.
            gen_kwargs.update(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0)
        if any(prompt.stop):
            gen_kwargs["stopping_criteria"] = _stop_criteria(self.tokenizer, prompt.stop, len(prompt_ids))
        if greedy and prompt.ordinal and (ordinal := self._single_token_ids(prompt.ordinal)):
            gen_kwargs["logits_processor"] = _median_first(ordinal, len(prompt_ids))
        # A private RNG state when seeded: reproducible samples without disturbing global state.
        rng = (
            torch.random.fork_rng(devices=[] if str(self.device) == "cpu" else None)
            if seed is not None
            else nullcontext()
        )
        try:
            with self._lock, rng, torch.inference_mode():
                if seed is not None:
                    torch.manual_seed(seed)
                out = self._model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **gen_kwargs
                )
        except RuntimeError as exc:
            raise ModelError(f"{self.name}: generation failed: {' '.join(str(exc).split())[:300]}") from None
        new_ids = out.sequences[:, len(prompt_ids) :].tolist()
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1) if out.logits else None
        samples: list[Sample] = []
        completion_tokens = 0
        for row, ids in enumerate(new_ids):
            text, keep, hit_eos = self._cut(ids, prompt.stop)
            completion_tokens += keep + int(hit_eos)
            token_lps = [float(logprobs[row, t, ids[t]]) for t in range(keep)] if logprobs is not None else []
            samples.append(Sample(text=text, logprob=sum(token_lps), token_logprobs=token_lps))
        if greedy:
            samples = [samples[0].model_copy(deep=True) for _ in range(n)]
        usage = Usage(prompt_tokens=len(prompt_ids), completion_tokens=completion_tokens, requests=1)
        return Generation(samples=samples, usage=usage, seconds=time.monotonic() - start)

    def _single_token_ids(self, symbols: list[str]) -> list[int]:
        """Each symbol's token id, or ``[]`` when one is not a single token of this tokenizer."""
        ids = [self.tokenizer.encode(s, add_special_tokens=False) for s in symbols]
        return [i[0] for i in ids] if all(len(i) == 1 for i in ids) else []

    def _cut(self, ids: list[int], stops: list[str]) -> tuple[str, int, bool]:
        """Text before the first stop string or ``eos``; how many tokens produced it (stop included).

        Returns:
            ``(text, tokens_kept, ended_at_eos)``.
        """
        end = len(ids)
        hit_eos = False
        for i, tid in enumerate(ids):
            if tid == self._eos_id:  # later positions are padding
                end, hit_eos = i, True
                break

        def decode(part: list[int]) -> str:
            return str(self.tokenizer.decode(part, skip_special_tokens=True))

        text = decode(ids[:end])
        found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
        if not found:
            return text, end, hit_eos
        cut = min(found)
        # The fewest tokens whose text contains a stop string: those are the tokens the model
        # actually produced for this answer (the rest were generated for other batch rows).
        for k in range(1, end + 1):
            if any(s and s in decode(ids[:k]) for s in stops):
                return text[:cut], k, False
        return text[:cut], end, False  # pragma: no cover - the loop always finds it

    # -- scoring ----------------------------------------------------------------------------

    def score(self, prompt: RenderedPrompt, candidates: list[str]) -> list[float]:
        """Sum of the log-probabilities of each candidate's tokens after the prompt.

        Candidates are tokenized on their own (no special tokens) and appended to the prompt's
        tokens; all candidates go through one right-padded forward pass (in chunks of
        :data:`SCORE_BATCH`), or, when each is one token (a table's class symbols), are read from
        the prompt's last logits in a single pass. An empty candidate scores 0.
        """
        import torch

        if not candidates:
            return []
        prompt_ids = self.encode_prompt(prompt)
        cand_ids = [list(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in candidates]
        if all(len(c) == 1 for c in cand_ids):  # one token each (a table's class symbols): one pass
            return self._score_next_token(prompt_ids, [c[0] for c in cand_ids], torch)
        scores: list[float] = []
        with self._lock:
            for lo in range(0, len(cand_ids), SCORE_BATCH):
                chunk = cand_ids[lo : lo + SCORE_BATCH]
                scores.extend(self._score_chunk(prompt_ids, chunk, torch))
        return scores

    def score_usage(self, prompt: RenderedPrompt, candidates: list[str]) -> Usage:
        """The prompt's tokens once and every candidate's tokens (see :meth:`ModelBackend.score_usage`)."""
        completion = sum(len(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in candidates)
        return Usage(prompt_tokens=len(self.encode_prompt(prompt)), completion_tokens=completion, requests=1)

    def _score_next_token(self, prompt_ids: list[int], tokens: list[int], torch: Any) -> list[float]:
        """Log-probabilities of single-token candidates: the prompt's last logits, read once."""
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        with self._lock, torch.inference_mode():
            logits = self._model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        logp = logits[0, -1].float().log_softmax(-1)
        return [float(logp[t]) for t in tokens]

    def _score_chunk(self, prompt_ids: list[int], chunk: list[list[int]], torch: Any) -> list[float]:
        width = len(prompt_ids) + max(len(c) for c in chunk)
        ids = torch.full((len(chunk), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, cand in enumerate(chunk):
            seq = prompt_ids + cand
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, : len(seq)] = 1
        with torch.inference_mode():
            logits = self._model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        logp = logits.float().log_softmax(-1)
        out = []
        p = len(prompt_ids)
        for i, cand in enumerate(chunk):
            if not cand:
                out.append(0.0)
                continue
            # The logits at position t predict token t + 1.
            positions = torch.arange(p - 1, p - 1 + len(cand), device=logp.device)
            targets = torch.tensor(cand, dtype=torch.long, device=logp.device)
            out.append(float(logp[i, positions, targets].sum()))
        return out

    # -- adaptation -------------------------------------------------------------------------

    @contextmanager
    def adapter(self, **lora: Any) -> Iterator[Any]:
        """Wrap the model in a fresh LoRA adapter; remove it on exit, base weights untouched.

        While the context is open, :meth:`generate` and :meth:`score` use the adapted model
        (peft injects its layers into the model in place); calls from other threads wait until
        the context closes.

        Args:
            **lora: ``r`` (16), ``lora_alpha`` (or ``alpha``; default ``2 * r``), ``target_modules``
                (``"all-linear"``), ``lora_dropout`` (0) and any other ``peft.LoraConfig`` field.

        Yields:
            The trainable ``peft`` model (only LoRA weights require grad).

        Raises:
            ModelError: If an adapter is already active.
            ModelConfigError: On an invalid LoRA configuration.
        """
        from peft import LoraConfig, get_peft_model

        opts = dict(lora)
        r = int(opts.pop("r", 16))
        alpha = opts.pop("lora_alpha", opts.pop("alpha", 2 * r))
        try:
            config = LoraConfig(
                r=r,
                lora_alpha=alpha,
                target_modules=opts.pop("target_modules", "all-linear"),
                lora_dropout=opts.pop("lora_dropout", 0.0),
                task_type="CAUSAL_LM",
                **opts,
            )
        except (TypeError, ValueError) as exc:
            raise ModelConfigError(f"invalid LoRA settings: {' '.join(str(exc).split())}") from None
        with self._lock:  # held throughout: other threads must not see the adapted weights
            if self._adapter_active:
                raise ModelError(f"{self.name}: an adapter is already active (adapters do not nest)")
            requires_grad = {name: p.requires_grad for name, p in self._model.named_parameters()}
            was_training = self._model.training
            with warnings.catch_warnings():
                # peft calls a transformers API deprecated in 5.x; nothing the user can act on.
                warnings.filterwarnings(
                    "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
                )
                peft_model = get_peft_model(self._model, config)
            self._adapter_active = True
            try:
                yield peft_model
            finally:
                base = peft_model.unload()
                for name, param in base.named_parameters():
                    param.requires_grad_(requires_grad.get(name, False))
                base.train(was_training)
                self._model = base
                self._adapter_active = False


def _stop_criteria(tokenizer: Any, stops: list[str], prompt_len: int) -> Any:
    """A per-row stopping criterion: a row is done once its completion contains a stop string."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    stops = [s for s in stops if s]
    # Every ordinary token decodes to at least one character, so the last len(stop) tokens (plus
    # slack for special tokens, which decode to nothing) hold any stop string that just appeared.
    tail = max(len(s) for s in stops) + 4

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            recent = input_ids[:, max(prompt_len, input_ids.shape[1] - tail) :]
            texts = tokenizer.batch_decode(recent, skip_special_tokens=True)
            done = [any(s in t for s in stops) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopOnStrings()])


def _median_first(ordinal: list[int], prompt_len: int) -> Any:
    """A logits processor that makes the first new token the median of the model's distribution
    over the ``ordinal`` tokens (renormalised over them), so greedy decoding of an ordered answer
    minimises its expected absolute error; later tokens are left alone. ``generate`` reports the
    unprocessed logits, so the answer's log-probability stays the model's own."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class MedianFirst(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if input_ids.shape[1] != prompt_len:
                return scores
            ids = torch.tensor(ordinal, device=scores.device)
            cdf = scores[:, ids].float().softmax(-1).cumsum(-1)
            pick = ids[(cdf < 0.5).sum(-1).clamp(max=len(ordinal) - 1)]  # first symbol reaching half
            forced = torch.full_like(scores, float("-inf"))
            return forced.scatter(1, pick[:, None], 0.0)

    return LogitsProcessorList([MedianFirst()])
