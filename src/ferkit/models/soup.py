"""Weight averaging ("model soups", Wortsman et al., ICML 2022): one network whose weights are
the mean of several fine-tunes of the same start, at the cost of one model at inference.

    members = [load_torch_model(m) for m in ("flagship", "runs/a", "runs/b")]
    model, meta = average_models(members)
    model, meta, trace = greedy_soup(members, score)  # score(model) -> validation accuracy

Averaging only works for models that share a start and stay in one basin of the loss (the
runs fine-tuned from one checkpoint, say): the weights of independently trained networks
average to noise. The batch-norm statistics are averaged with the weights, as the paper does.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ferkit.errors import CheckpointError

__all__ = ["average_models", "greedy_soup"]

# what must agree for weights to average into one model with one meaning for its outputs
SAME = ("arch", "arch_kwargs", "num_classes", "in_channels", "input_size", "mean", "std", "labels")

Member = tuple[nn.Module, dict[str, Any]]


def average_models(members: Sequence[Member], names: Sequence[str] | None = None) -> Member:
    """The uniform soup of `members` ((model, meta) pairs as `load_torch_model` returns them).

    Floating-point tensors (weights, batch-norm statistics) are averaged in float32 and built
    into a fresh float32 model of the members' architecture; integer buffers (batch norm's
    step counter) are the first member's. The meta is the first member's without its metrics
    and temperature (neither holds for the soup), with `extra["soup"]` naming the members.

    Raises:
        CheckpointError: fewer than two members, members that differ in architecture, input
            or labels, or two that hold the same weights (a run's best.pt and last.pt when its
            best epoch was its last: averaging both would count it twice); `names` say which.
    """
    names = _names(members, names)
    _check(members, names)
    return _average(members, names)


def greedy_soup(
    members: Sequence[Member],
    score: Callable[[nn.Module], float],
    names: Sequence[str] | None = None,
    alone: Sequence[float] | None = None,
) -> tuple[nn.Module, dict[str, Any], list[dict[str, Any]]]:
    """The greedy soup: members ordered by `score` (higher is better; validation accuracy),
    each added to the soup only if the soup's score does not fall. `alone`: the members' own
    scores, where the caller has them already (else each is scored here).

    Returns:
        (model, meta, trace): the soup (the best member alone, as a float32 copy, if no other
        joins it), its meta (`extra["soup"]` naming the members kept, `metrics["score"]` its
        score) and one entry per step: {"tried": names, "score": float, "kept": bool}.

    Raises:
        CheckpointError: as `average_models`.
    """
    names = _names(members, names)
    _check(members, names)
    if alone is None:
        alone = [score(model) for model, _ in members]
    order = sorted(range(len(members)), key=lambda i: -alone[i])
    kept = [order[0]]
    best = alone[order[0]]
    trace = [{"tried": [names[order[0]]], "score": best, "kept": True}]
    for i in order[1:]:
        trial = [*kept, i]
        model, _ = _average([members[j] for j in trial], [names[j] for j in trial])
        value = score(model)
        trace.append({"tried": [names[j] for j in trial], "score": value, "kept": value >= best})
        if value >= best:
            kept, best = trial, value
    model, meta = _average([members[j] for j in kept], [names[j] for j in kept])
    meta["metrics"] = {"score": float(best)}
    return model, meta, trace


def _names(members: Sequence[Member], names: Sequence[str] | None) -> list[str]:
    return list(names or (f"member {i + 1}" for i in range(len(members))))


def _check(members: Sequence[Member], names: list[str]) -> None:
    """Refuse what cannot average into one meaningful model (see `average_models`)."""
    if len(members) < 2:
        raise CheckpointError("a soup needs at least two models to average")
    first = members[0][1]
    for name, (_, meta) in zip(names[1:], members[1:], strict=True):
        differ = [key for key in SAME if _norm(meta.get(key)) != _norm(first.get(key))]
        if differ:
            key = differ[0]
            raise CheckpointError(
                f"{name} differs from {names[0]} in {key} ({meta.get(key)!r} against "
                f"{first.get(key)!r}): only models of one architecture, input and label set, "
                "fine-tuned from one start, average into one"
            )
    states = [model.state_dict() for model, _ in members]
    for i, j in itertools.combinations(range(len(states)), 2):
        if all(torch.equal(states[i][k], states[j][k]) for k in states[i]):
            raise CheckpointError(
                f"{names[i]} and {names[j]} hold the same weights (a run's best and last "
                "epoch, say): name one of them, or it counts twice in the average"
            )


def _average(members: Sequence[Member], names: list[str]) -> Member:
    """The mean of `members`' floating-point tensors in a fresh float32 model (one member: a
    float32 copy of it), with the first member's meta as `average_models` describes it."""
    first = members[0][1]
    states = [model.state_dict() for model, _ in members]
    averaged = {}
    for key, tensor in states[0].items():
        if tensor.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0)
        else:
            averaged[key] = tensor.clone()
    model = copy.deepcopy(members[0][0]).float()  # the members' architecture, shared
    model.load_state_dict(averaged, strict=True)
    meta = {k: v for k, v in first.items() if k not in ("metrics", "temperature")}
    meta["extra"] = {**(first.get("extra") or {}), "soup": {"members": list(names)}}
    meta["metrics"], meta["temperature"] = {}, None
    return model.eval(), meta


def _norm(value: Any) -> Any:
    """Lists and tuples compare alike (a checkpoint stores either)."""
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value
