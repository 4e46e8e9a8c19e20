"""Temperature scaling: make a model's probabilities mean what they say.

A network trained with cross-entropy is usually over-confident. Dividing its logits by one
scalar T > 1, fitted on held-out data by minimising the negative log-likelihood (Guo et al.,
2017), fixes most of that without changing any prediction. T is stored in the checkpoint
(`temperature`) or the ONNX metadata, and the recognizer applies it.

Expected calibration error (ECE, 15 equal-width confidence bins, L1) is reported before and
after, measured with torchmetrics' MulticlassCalibrationError.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ferkit.errors import DataError

log = logging.getLogger(__name__)

ECE_BINS = 15
T_MIN, T_MAX = 0.05, 20.0  # fitted temperatures are clipped to this range


@dataclass(frozen=True)
class CalibrationReport:
    """What temperature fitting found, on `n` validation faces."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    accuracy: float  # unchanged by temperature, reported for context
    n: int

    def to_dict(self) -> dict:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return (
            f"temperature {self.temperature:.3f} on {self.n} faces: ECE {self.ece_before:.4f} -> "
            f"{self.ece_after:.4f}, NLL {self.nll_before:.4f} -> {self.nll_after:.4f} "
            f"(accuracy {self.accuracy:.2%}, unchanged)"
        )


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS
) -> float:
    """ECE (L1, equal-width bins) of class probabilities (N, C) against integer labels (N,)."""
    from torchmetrics.classification import MulticlassCalibrationError

    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=n_bins, norm="l1")
    return float(metric(probs.float(), labels.long()))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T), by L-BFGS on log T.

    Optimising log T keeps T positive without constraints and makes the problem well scaled
    for both over- (T > 1) and under-confident (T < 1) models.
    """
    if len(logits) == 0:
        raise DataError("cannot fit a temperature on no validation faces")
    logits, labels = logits.detach().float(), labels.detach().long()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not T_MIN <= t <= T_MAX:
        # Happens for models near chance (the NLL keeps falling as T grows): keep T usable.
        log.warning(
            "fitted temperature %.3g clipped to [%g, %g]: is the model trained, and are the "
            "labels in its label order?",
            t,
            T_MIN,
            T_MAX,
        )
    return min(max(t, T_MIN), T_MAX)


def calibrate(logits: torch.Tensor, labels: torch.Tensor) -> CalibrationReport:
    """Fit a temperature on validation logits and report ECE and NLL before and after."""
    logits, labels = torch.as_tensor(logits).float(), torch.as_tensor(labels).long()
    t = fit_temperature(logits, labels)
    before, after = logits.softmax(1), (logits / t).softmax(1)
    report = CalibrationReport(
        temperature=t,
        ece_before=expected_calibration_error(before, labels),
        ece_after=expected_calibration_error(after, labels),
        nll_before=float(F.cross_entropy(logits, labels)),
        nll_after=float(F.cross_entropy(logits / t, labels)),
        accuracy=float((logits.argmax(1) == labels).float().mean()),
        n=len(labels),
    )
    return report  # the caller says it (`ferkit export --calibrate` prints it)
