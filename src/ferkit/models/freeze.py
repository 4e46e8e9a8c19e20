"""Freeze policies and per-part learning rates for fine-tuning pretrained models.

A model names its head with `get_classifier()` (timm's interface) and, if it has one, its last
stage with `get_last_stage()`; the policies are defined on those names only:

    none        everything trains (full fine-tune)
    head        only the classifier trains (a linear probe on the pretrained features)
    last_stage  the last stage and the classifier train

`param_groups(model, lr, body_lr_scale)` gives the optimizer a lower learning rate for the
pretrained body than for the new head.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ferkit.errors import ConfigError, unknown

__all__ = ["FREEZE_POLICIES", "FrozenNormMixin", "freeze", "param_groups"]

FREEZE_POLICIES = ("none", "head", "last_stage")


def _trainable_part(model: nn.Module, policy: str) -> list[nn.Module]:
    if policy not in FREEZE_POLICIES:
        raise ConfigError(unknown("freeze policy", policy, FREEZE_POLICIES))
    if policy == "none":
        return [model]
    if not hasattr(model, "get_classifier"):
        raise ConfigError(f"freeze={policy!r} needs a model with get_classifier()")
    parts = [model.get_classifier()]
    if policy == "last_stage":
        if not hasattr(model, "get_last_stage"):
            arch = getattr(model, "ferkit_arch", type(model).__name__)
            raise ConfigError(
                f"model {arch!r} has no last stage to unfreeze; use freeze='head' or 'none'"
            )
        parts.append(model.get_last_stage())
    return parts


def freeze(model: nn.Module, policy: str) -> nn.Module:
    """Set `requires_grad` so that exactly the part `policy` names trains; returns `model`.

    Batch-norm layers whose parameters are frozen should also keep their running statistics;
    models that mix in `FrozenNormMixin` do so in `train()` mode.

    Raises:
        ConfigError: unknown policy, or a model without the part the policy needs.
    """
    parts = _trainable_part(model, policy)
    model.requires_grad_(False)
    for part in parts:
        part.requires_grad_(True)
    return model


def param_groups(model: nn.Module, lr: float, body_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head at `lr`, the rest (the body) at `lr * body_lr_scale`.

    Frozen parameters are left out, and so is a group with no parameters. Each group has a
    "name" ("head" or "body"), which torch optimizers keep and ignore.

    Example:
        torch.optim.AdamW(param_groups(model, 1e-3, body_lr_scale=0.1), weight_decay=0.05)
    """
    if lr <= 0 or body_lr_scale < 0:
        raise ConfigError(f"need lr > 0 and body_lr_scale >= 0, got {lr} and {body_lr_scale}")
    if not hasattr(model, "get_classifier"):
        raise ConfigError("param_groups needs a model with get_classifier() to find its head")
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) in head_ids]
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [
        {"name": "head", "params": head, "lr": lr},
        {"name": "body", "params": body, "lr": lr * body_lr_scale},
    ]
    return [g for g in groups if g["params"]]


class FrozenNormMixin:
    """Keeps frozen batch-norm layers in eval mode when the model trains.

    A BN layer updates its running mean and variance in train mode even when its weights
    are frozen, which would drift the pretrained statistics a `head` or `last_stage` fine-tune
    means to keep. Mix in before nn.Module: `class Net(FrozenNormMixin, ResNet)`.
    """

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        if mode:
            for m in self.modules():  # type: ignore[attr-defined]
                frozen = not any(p.requires_grad for p in m.parameters(recurse=False))
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and frozen:
                    m.eval()
        return self
