"""Batch-norm folding: a trained model for inference, with each conv + batch-norm pair as one conv.

    model = fold_batch_norm(model.eval())   # same outputs up to float rounding, one op fewer

Used by the PyTorch runner (`ferkit.inference.backends.TorchRunner`) and by distillation's
frozen teachers (`ferkit.training.distill`).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def fold_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """`model` (in eval mode) with conv + batch-norm pairs folded into single convs.

    Folds in place where it can (`torch.fx`'s conv-BN fusion); a model torch.fx cannot trace
    comes back unfolded, with a debug log line.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model, inplace=True)
    except Exception as err:
        log.debug(
            "batch norm left unfolded: torch.fx could not trace %s (%s)", type(model).__name__, err
        )
        return model
