"""Depth up-scaling: a trained model with more blocks that computes exactly what it computed.

Both shipped models are pre-norm residual stacks: a block adds ``attention(norm(x))`` and then
``mlp(norm(x))`` to its input, so a block whose two output projections are zero is the identity.
A grown model places each new block after an old one, as a copy of it with those projections
zeroed: the same function, and the copy's attention and MLP weights suit the depth it sits at
(the way SOLAR's depth up-scaling reuses layers). Training then puts the new depth to use.
``python -m models.train_table --resume DIR --grow-layers N`` and ``python -m models.train
--resume DIR --grow-layers N`` grow a run this way; the old parameters keep their Adam moments.
"""

from __future__ import annotations

from typing import Any


def grown_block_order(layers: int, extra: int) -> list[int]:
    """Where each block of a model grown from ``layers`` to ``layers + extra`` blocks comes from:
    the old block's index, or ``-1 - i`` for a new block that follows old block ``i``. New blocks
    are spread evenly, each after an old one (after blocks 1, 3, 5 for 6 + 3)."""
    if layers < 1 or extra < 0:
        raise ValueError(f"grow: {layers} layers + {extra} new blocks")
    if extra <= layers:  # evenly spaced, from the last block back (spacing >= 1: all distinct)
        after = [layers - 1 - round(k * layers / extra) for k in range(extra)]
    else:  # more new blocks than old ones: several after the same blocks
        after = [layers - 1 - k % layers for k in range(extra)]
    order: list[int] = []
    for i in range(layers):
        order.append(i)
        order += [-1 - i] * after.count(i)
    return order


def grown_state(
    state: dict[str, Any], prefix: str, order: list[int], zeroed: tuple[str, ...]
) -> dict[str, Any]:
    """A state dict whose blocks (keys ``{prefix}{i}.{name}``) are laid out by ``order``
    (:func:`grown_block_order`): old blocks keep their weights, a new block copies its source
    with the parameters named in ``zeroed`` (its output projections) set to zero."""
    import torch

    out = {k: v for k, v in state.items() if not k.startswith(prefix)}
    blocks: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split(".", 1)
            blocks.setdefault(int(index), {})[name] = value
    for new, old in enumerate(order):
        for name, value in blocks[old if old >= 0 else -1 - old].items():
            fresh = old < 0 and name in zeroed
            out[f"{prefix}{new}.{name}"] = torch.zeros_like(value) if fresh else value.clone()
    return out


def renamed(name: str, prefix: str, order: list[int]) -> str:
    """An old parameter's name in the grown model (old blocks move to their new index)."""
    if not name.startswith(prefix):
        return name
    index, rest = name[len(prefix) :].split(".", 1)
    return f"{prefix}{order.index(int(index))}.{rest}"


def carry_moments(
    opt: Any, model: Any, old_names: list[str], old_state: dict[str, Any], prefix: str, order: list[int]
) -> None:
    """Give ``opt``, a fresh optimiser over the grown ``model``, each old parameter's moments
    (``old_state``: the old optimiser's state dict, its parameters named ``old_names`` in order)
    at the parameter's new place; new parameters start without moments, as in a fresh optimiser."""
    position = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    moments = old_state["state"]
    carried = {
        position[renamed(n, prefix, order)]: moments[i] for i, n in enumerate(old_names) if i in moments
    }
    opt.load_state_dict(opt.state_dict() | {"state": carried})
