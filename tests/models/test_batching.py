"""The shared batcher: right padding, attention on real tokens, labels only where the mask is on."""

from __future__ import annotations

from models.batching import make_batch


def test_rows_are_right_padded_and_labelled_only_under_the_mask():
    batch = make_batch([([5, 6, 7], [0, 1, 1]), ([8], [1])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert {str(t.dtype) for t in batch.values()} == {"torch.int64"}
