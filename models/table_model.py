"""The embedded table model: a small prior-fitted network (TabPFN-style) that reads the compact text.

A character-level decoder has to find, for the query row, the demonstration rows that look like
it, cell by cell, before it can copy a label: a multi-hop search that a 3 M-parameter model
trained for a few CPU-hours does not learn (the text model scores 0 % on tables). Here one
*row* is one token instead:

* the prompt is the same compact text every other part of the product writes and reads
  (:mod:`prompts.tabular`: ``I<cells>O<label>\\n`` per demonstration, then ``I<cells>O``) and the
  same character ids; :meth:`TableModel.forward` finds the rows in the ids;
* each row becomes a vector: the sum of one embedding per (column, cell symbol) pair plus, for a
  numeric cell, its decile times a per-column vector, through a small MLP;
* every row gives two tokens: a *context* token (the row and its label) and a *query* token (the
  row alone). Context tokens attend to earlier context tokens; the query token of row ``k``
  attends to the context tokens of rows ``< k`` (and itself), so the label of every row is
  predicted from the rows before it, exactly like a causal language model, and one forward pass
  trains on every label of an episode (TabPFN's train/test attention, made causal over rows);
* the query token's output is the distribution of the label symbol, placed at the position of
  the row's ``O``, and the position after the label predicts the newline: to the rest of the
  product it is a causal LM over characters (``logits[t]`` predicts token ``t + 1``), so loss
  masks, :meth:`models.hf_backend.HFBackend.score`, test-time training with LoRA and greedy or
  sampled generation (:meth:`TableModel.generate`) work unchanged.

It is a ``transformers`` ``PreTrainedModel`` registered with the Auto classes (model type
``mockingbird_table``), so ``save_pretrained`` / ``from_pretrained`` and peft's LoRA work as for
any checkpoint. Train it with ``python -m models.train_table``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel

from models.tokenizer import vocabulary
from prompts.tabular import CATEGORY_SYMBOLS, END, INPUT_MARK, MISSING, OUTPUT_MARK, UNSEEN

MODEL_TYPE = "mockingbird_table"
#: Cell classes: 0 = no cell (padding), 1-10 digits, 11-36 categories, missing, unseen, other.
CELL_CLASSES = 1 + 10 + len(CATEGORY_SYMBOLS) + 3
#: Logit of the newline after a label: the format is fixed, so the model is certain of it.
NEWLINE_LOGIT = 30.0


def _cell_table(vocab: dict[str, int]) -> list[int]:
    """Vocabulary id -> cell class (see :data:`CELL_CLASSES`)."""
    table = [CELL_CLASSES - 1] * len(vocab)
    for d in range(10):
        table[vocab[str(d)]] = 1 + d
    for i, ch in enumerate(CATEGORY_SYMBOLS):
        table[vocab[ch]] = 11 + i
    table[vocab[MISSING]] = CELL_CLASSES - 3
    table[vocab[UNSEEN]] = CELL_CLASSES - 2
    return table


class TableConfig(PretrainedConfig):
    """Shape of the table model (the character ids come from :func:`models.tokenizer.vocabulary`)."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 100,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        max_features: int = 64,
        max_rows: int = 128,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.max_features = max_features  # columns beyond this are not read (the context fits ~60)
        self.max_rows = max_rows  # rows beyond this are not read
        super().__init__(**kwargs)


@dataclass
class Rows:
    """The rows of a batch of compact prompts, padded: what :meth:`TableModel.forward` embeds."""

    cells: torch.Tensor  # [B, R, F] cell classes (0 = none)
    values: torch.Tensor  # [B, R, F] numeric value of a digit cell in [-1, 1], else 0
    labels: torch.Tensor  # [B, R] vocabulary id of the row's label (0 = none yet)
    valid: torch.Tensor  # [B, R] bool: the row exists
    out_pos: torch.Tensor  # [B, R] position of the row's ``O`` (predicts its label), -1 if none
    label_pos: torch.Tensor  # [B, R] position of its label (predicts the newline), -1 if none


class Block(nn.Module):
    """Pre-norm attention over row tokens, then an MLP."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class TableModel(PreTrainedModel, GenerationMixin):  # the mixin: peft's wrapper reads its hooks
    """See the module docstring."""

    config_class = TableConfig
    base_model_prefix = "table"
    main_input_name = "input_ids"

    def __init__(self, config: TableConfig) -> None:
        super().__init__(config)
        d, f = config.hidden_size, config.max_features
        self.cell_embed = nn.Embedding(f * CELL_CLASSES, d)  # one vector per (column, symbol)
        self.numeric = nn.Embedding(f, d)  # per column: the direction a digit's value moves along
        self.row_mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.label_embed = nn.Embedding(config.vocab_size, d)
        self.role = nn.Embedding(2, d)  # 0: context token (row + label), 1: query token (row)
        self.blocks = nn.ModuleList(Block(d, config.num_heads) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size)
        vocab = vocabulary()
        self._ids = {k: vocab[v] for k, v in (("in", INPUT_MARK), ("out", OUTPUT_MARK), ("end", END))}
        # Built on first use, not a buffer: from_pretrained builds the module on the meta device.
        self._cell_table = _cell_table(vocab)
        self._cell_of: torch.Tensor | None = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_output_embeddings(self) -> nn.Module:
        return self.head  # peft's "all-linear" leaves the output layer out

    def get_input_embeddings(self) -> nn.Module:
        return self.label_embed

    # -- reading the compact text -----------------------------------------------------------

    def find_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Rows:
        """Locate every ``I<cells>O[label]`` row of each sequence (see :class:`Rows`)."""
        cfg = self.config
        ids = input_ids.tolist()
        lengths = attention_mask.sum(1).tolist() if attention_mask is not None else [len(r) for r in ids]
        found: list[list[tuple[list[int], int, int, int]]] = []  # (cells, label id, O pos, label pos)
        for seq, n in zip(ids, lengths, strict=True):
            rows = []
            start = -1
            for t in range(int(n)):
                tok = seq[t]
                if tok == self._ids["in"]:
                    start = t
                elif tok == self._ids["out"] and start >= 0:
                    has_label = t + 1 < n and seq[t + 1] != self._ids["end"]
                    label = seq[t + 1] if has_label else 0
                    rows.append(
                        (seq[start + 1 : t][: cfg.max_features], label, t, t + 1 if has_label else -1)
                    )
                    start = -1
            found.append(rows[-cfg.max_rows :])  # the query is last: keep the latest rows
        b = len(ids)
        r = max(1, max(len(rows) for rows in found))
        f = max(1, max((len(c) for rows in found for c, *_ in rows), default=1))

        def padded(column: int, fill: int) -> torch.Tensor:  # [B, R] of one field of every row
            return torch.tensor([[row[column] for row in rows] + [fill] * (r - len(rows)) for rows in found])

        # one tensor from nested lists, not one per row: per-row copies were a tenth of a step
        cell_ids = torch.tensor(
            [[c + [0] * (f - len(c)) for c, *_ in rows] + [[0] * f] * (r - len(rows)) for rows in found],
            dtype=torch.long,
        ).reshape(b, r, f)
        widths = torch.tensor([[len(c) for c, *_ in rows] + [0] * (r - len(rows)) for rows in found])
        has_cell = torch.arange(f) < widths[..., None]
        labels, out_pos, label_pos = padded(1, 0), padded(2, -1), padded(3, -1)
        valid = torch.arange(r) < torch.tensor([len(rows) for rows in found])[:, None]
        device = input_ids.device
        cell_ids, has_cell = cell_ids.to(device), has_cell.to(device)
        if self._cell_of is None or self._cell_of.device != device:
            self._cell_of = torch.tensor(self._cell_table, device=device)
        cells = torch.where(has_cell, self._cell_of[cell_ids], torch.zeros_like(cell_ids))
        digit = (cells >= 1) & (cells <= 10)
        values = torch.where(
            digit, (cells - 1).float() / 4.5 - 1.0, torch.zeros_like(cells, dtype=torch.float)
        )
        return Rows(
            cells, values, labels.to(device), valid.to(device), out_pos.to(device), label_pos.to(device)
        )

    # -- the network ------------------------------------------------------------------------

    def row_sums(self, rows: Rows) -> torch.Tensor:
        """Each row's cells as one vector, ``[B, R, d]``: the sum of its (column, symbol) vectors and
        of each digit's value times its column's vector, over the square root of its width.

        As an embedding bag and a matmul, never the ``[B, R, F, d]`` tensor of every cell's
        vector (:func:`dense_row_sums`, the same sum: a fifth of a training step went to it).
        """
        b, r, f = rows.cells.shape
        column = torch.arange(f, device=rows.cells.device)
        present = (rows.cells > 0).float()
        cells = F.embedding_bag(
            (column * CELL_CLASSES + rows.cells).reshape(-1, f),
            self.cell_embed.weight,
            mode="sum",
            per_sample_weights=present.reshape(-1, f),
        ).reshape(b, r, -1)
        numeric = rows.values @ self.numeric.weight[:f]  # values are 0 outside digit cells
        return (cells + numeric) / present.sum(-1, keepdim=True).clamp(min=1).sqrt()

    def row_logits(self, rows: Rows) -> torch.Tensor:
        """Label logits per row, ``[B, R, vocab]``, each from the rows before it."""
        r = rows.cells.shape[1]
        x = self.row_sums(rows)
        x = x + self.row_mlp(x)
        context = x + self.label_embed(rows.labels) + self.role.weight[0]
        query = x + self.role.weight[1]
        h = torch.cat([context, query], dim=1)  # [B, 2R, d]
        idx = torch.arange(r, device=h.device)
        ctx_ctx = idx[None, :] <= idx[:, None]  # context i sees context j <= i
        q_ctx = idx[None, :] < idx[:, None]  # query i sees context j < i
        eye = torch.eye(r, dtype=torch.bool, device=h.device)
        none = torch.zeros_like(eye)
        allowed = torch.cat([torch.cat([ctx_ctx, none], 1), torch.cat([q_ctx, eye], 1)], 0)
        keys_valid = torch.cat([rows.valid, rows.valid], 1)  # [B, 2R]
        allowed = allowed[None] & keys_valid[:, None, :]
        allowed = allowed | torch.eye(2 * r, dtype=torch.bool, device=h.device)[None]  # never empty
        for block in self.blocks:
            h = block(h, allowed)
        return self.head(self.norm(h[:, r:]))  # the query tokens

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> Any:
        """Character-level logits ``[B, T, vocab]`` (``logits[t]`` predicts token ``t + 1``) and the loss.

        Positions outside a row's label and its newline get uniform logits: the table model
        predicts labels, not cells (a loss mask never covers them).
        """
        assert input_ids is not None
        b, t = input_ids.shape
        rows = self.find_rows(input_ids, attention_mask)
        per_row = self.row_logits(rows)  # [B, R, V]
        logits = torch.zeros((b, t, self.config.vocab_size), dtype=per_row.dtype, device=per_row.device)
        bi, ri = torch.nonzero(rows.out_pos >= 0, as_tuple=True)
        logits = logits.index_put((bi, rows.out_pos[bi, ri]), per_row[bi, ri])
        bi, ri = torch.nonzero(rows.label_pos >= 0, as_tuple=True)
        newline = torch.full_like(per_row[0, 0], -NEWLINE_LOGIT)
        newline[self._ids["end"]] = NEWLINE_LOGIT
        logits = logits.index_put((bi, rows.label_pos[bi, ri]), newline.expand(len(bi), -1))
        loss = None
        if labels is not None:
            # the mean over the targeted positions only (the labels and their newlines): the same
            # value as cross-entropy over every position with the rest ignored, without a log-softmax
            # over all of them (a tenth of a training step's time)
            targets = labels[:, 1:]
            keep = targets != -100
            loss = F.cross_entropy(logits[:, :-1][keep], targets[keep])
        return SimpleNamespace(loss=loss, logits=logits)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 2,
        do_sample: bool = False,
        temperature: float | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int = 0,
        stopping_criteria: Any = None,
        logits_processor: Any = None,
        **_: Any,
    ) -> Any:
        """Greedy or temperature sampling without a cache (a label and its newline: two passes).

        ``logits_processor`` (as ``transformers`` takes it) changes the scores a token is chosen
        from, not the logits reported. Returns what ``HFBackend.generate`` reads of
        ``transformers``' ``generate``: ``sequences`` and per-step ``logits``.
        """
        seqs = input_ids.clone()
        done = torch.zeros(seqs.shape[0], dtype=torch.bool, device=seqs.device)
        steps = []
        for _step in range(max_new_tokens):
            logits = self.forward(seqs, torch.ones_like(seqs)).logits[:, -1].float()
            steps.append(logits)  # unprocessed, as transformers reports them
            if logits_processor is not None:
                logits = logits_processor(seqs, logits)
            if do_sample:
                probs = torch.softmax(logits / max(float(temperature or 1.0), 1e-6), -1)
                nxt = torch.multinomial(probs, 1)[:, 0]
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
            seqs = torch.cat([seqs, nxt[:, None]], 1)
            if eos_token_id is not None:
                done |= nxt == eos_token_id
            if stopping_criteria is not None:
                done |= torch.as_tensor(stopping_criteria(seqs, logits), device=seqs.device).bool()
            if bool(done.all()):
                break
        return SimpleNamespace(sequences=seqs, logits=tuple(steps))


def build_table_model(*, hidden: int = 128, layers: int = 4, heads: int = 4, seed: int = 0) -> TableModel:
    """A freshly initialised table model for the character vocabulary."""
    vocab = vocabulary()
    config = TableConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<bos>"],
        eos_token_id=vocab["<eos>"],
    )
    torch.manual_seed(seed)
    return TableModel(config)


def dense_row_sums(model: TableModel, rows: Rows) -> torch.Tensor:
    """:meth:`TableModel.row_sums` the direct way, through every cell's vector ``[B, R, F, d]``: how
    the model computed it before session 38, kept as the definition the fast sum is tested
    against and the baseline ``python -m models.step_bench`` times it against."""
    f = rows.cells.shape[2]
    column = torch.arange(f, device=rows.cells.device)
    emb = model.cell_embed(column * CELL_CLASSES + rows.cells)
    emb = emb + rows.values[..., None] * model.numeric(column)
    emb = emb * (rows.cells > 0)[..., None]
    width = (rows.cells > 0).sum(-1, keepdim=True).clamp(min=1).float()
    return emb.sum(2) / width.sqrt()


def grow_layers(model: TableModel, extra: int) -> TableModel:
    """The same function with ``extra`` more attention blocks (depth up-scaling).

    Each new block starts as a copy of the block before it with its two output projections
    (attention ``proj``, MLP ``down``, weights and biases) zeroed (:mod:`models.growth`).
    """

    from models.growth import grown_block_order, grown_state

    cfg = model.config
    order = grown_block_order(cfg.num_layers, extra)
    grown = TableModel(TableConfig(**{**cfg.to_dict(), "num_layers": len(order)}))
    state = grown_state(
        model.state_dict(), "blocks.", order, ("proj.weight", "proj.bias", "down.weight", "down.bias")
    )
    grown.load_state_dict(state)
    nn.Module.to(grown, next(model.parameters()).device)  # transformers' typed .to() wants a model
    return grown


def save_table_checkpoint(model: TableModel, out: Path, marker: dict[str, Any]) -> None:
    """Weights in fp16, the character tokenizer and ``mockingbird.json`` (compact format, kind
    ``tabular``). fp16 halves the bytes in git, as for the text model; backends load it as fp32
    (a resumed run keeps its fp32 weights in ``train_state.pt``)."""
    import copy

    from models.tokenizer import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).half().save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    marker = {**marker, "format": "compact", "kind": "tabular", "architecture": MODEL_TYPE}
    (out / "mockingbird.json").write_text(json.dumps(marker, indent=2) + "\n")


AutoConfig.register(MODEL_TYPE, TableConfig, exist_ok=True)
AutoModelForCausalLM.register(TableConfig, TableModel, exist_ok=True)
