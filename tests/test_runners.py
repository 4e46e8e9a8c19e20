"""TorchRunner's bfloat16 path: weights cast once give what autocast gives, for every model."""

from __future__ import annotations

import copy

import pytest
import torch

from ferkit.inference.backends import TorchRunner
from ferkit.models import create_model, get_model_spec, list_models
from ferkit.models.fold import fold_batch_norm


@pytest.mark.parametrize("arch", list_models())
def test_bf16_runner_equals_autocast_of_the_fp32_model(arch):
    torch.manual_seed(0)
    model = create_model(arch).eval()
    spec = get_model_spec(arch)
    x = torch.randn(3, spec.in_channels, *spec.input_size)
    # What the runner did before casting its weights: autocast around the fp32 network.
    reference = fold_batch_norm(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = reference(x.contiguous(memory_format=torch.channels_last)).float()

    runner = TorchRunner(model, bf16=True)
    convs = [m for m in runner.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched
    got = runner(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    # The same logits for a face alone as in a batch, up to bf16 rounding of the batch's kernels.
    torch.testing.assert_close(runner(x[:1]), got[:1], atol=0.05, rtol=0.05)


def test_fp32_runner_keeps_fp32_weights():
    runner = TorchRunner(create_model("simple_cnn"), bf16=False)
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())
