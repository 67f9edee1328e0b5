"""The one batcher of pre-training and test-time training: right-padded token ids with a loss mask."""

from __future__ import annotations

from typing import Any


def make_batch(episodes: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors from (token ids, loss mask) pairs; labels are -100 where the mask is 0.

    Returns:
        ``input_ids`` (padded with ``pad_id``), ``attention_mask`` (1 on real tokens) and
        ``labels`` (the id where the mask is 1, else -100), each ``(len(episodes), longest)`` long.
    """
    import torch

    width = max(len(ids) for ids, _ in episodes)
    input_ids = torch.full((len(episodes), width), pad_id, dtype=torch.long)
    labels = torch.full((len(episodes), width), -100, dtype=torch.long)
    attention = torch.zeros((len(episodes), width), dtype=torch.long)
    for row, (ids, mask) in enumerate(episodes):
        t = torch.tensor(ids)
        input_ids[row, : len(ids)] = t
        attention[row, : len(ids)] = 1
        labels[row, : len(ids)] = torch.where(torch.tensor(mask) == 1, t, torch.tensor(-100))
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
