"""TorchRunner: weights cast to bf16 once and the traced graph give exactly what autocast of the
eager fp32 network gives, for every registered model."""

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
    runner(x[:1])  # the first call records the graph, at another batch size than the next
    assert isinstance(runner._run, torch.jit.ScriptModule)
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


@pytest.mark.parametrize("bf16", [False, True])
def test_traced_runner_equals_the_eager_network_at_every_batch_size(bf16):
    torch.manual_seed(0)
    model = create_model("flagship").eval()
    runner = TorchRunner(model, bf16=bf16)
    eager = TorchRunner(model, bf16=bf16)
    eager._run = eager.model  # never traced
    for n in (2, 1, 7, 64, 1):
        x = torch.randn(n, 1, 48, 48)
        assert torch.equal(runner(x), eager(x)), n
    assert isinstance(runner._run, torch.jit.ScriptModule)


def test_a_model_with_python_control_flow_is_not_traced():
    class DataDependent(torch.nn.Module):  # branches on values: a trace would fix one branch
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            y = self.fc(x.flatten(1))
            return y if y.sum() > 0 else -y

    torch.manual_seed(0)
    runner = TorchRunner(DataDependent(), bf16=False)
    assert runner._run is runner.model  # torch.fx could not fold it, so it runs as it is
    x = torch.randn(3, 1, 2, 2)
    with torch.inference_mode():
        torch.testing.assert_close(runner(x), runner.model(x))
        torch.testing.assert_close(runner(-x), runner.model(-x))
