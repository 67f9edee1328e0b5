"""The embedded model's tokenizer: one token per character, built locally with ``tokenizers``.

Character-level keeps a grid cell, a digit or a separator at exactly one token, which is what a
tiny model needs to line up input and output cells; it also means any text can be encoded, so
every task kind flows through the same code path (unknown characters map to ``<unk>``).

Build and save::

    from models.tokenizer import build_tokenizer
    build_tokenizer().save_pretrained("path/to/checkpoint")
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy import, only for types
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
#: Printable ASCII and newline: enough for grids, lists, numbers and plain text.
CHARACTERS = [ch for ch in string.printable if ch not in "\t\r\x0b\x0c"]

# The chat template makes the checkpoint servable by OpenAI-compatible servers
# (``transformers serve``): messages are concatenated, as the compact format is plain text.
CHAT_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"


def vocabulary() -> dict[str, int]:
    """Token -> id: the special tokens first, then the characters, in a fixed order."""
    tokens = SPECIAL_TOKENS + CHARACTERS
    return {tok: i for i, tok in enumerate(tokens)}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer as a transformers fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Every character is its own pre-token; [\s\S] also matches newlines.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
