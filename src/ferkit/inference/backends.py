"""Runners: a normalised batch (N, C, H, W) in, logits (N, classes) out, on PyTorch or ONNX Runtime.

Both take the float32 tensor that `ferkit.preprocess.to_model_input` makes and return float32
logits as a torch tensor, so the recognizer does not care which one it holds.

Neither changes global state (torch thread counts, default dtypes): a library that does so
surprises the program it is imported into.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ferkit.errors import CheckpointError, ConfigError, unknown
from ferkit.models.fold import fold_batch_norm

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")


class Runner(Protocol):
    """A model ready to run: `runner(x) -> logits`."""

    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def native_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # torch < 2.6, or an unknown CPU
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


class TorchRunner:
    """Runs an nn.Module under inference_mode, channels-last, in bfloat16 where that pays.

    Args:
        model: the network. It is not changed: the runner works on an eval-mode copy.
        bf16: autocast convolutions and matmuls to bfloat16; None (default) turns it on only
            on CPUs with native bf16 (`native_bf16()`). Measured on a 2-core AVX512-BF16 CPU
            with one thread, batch 64: simple_cnn 626 -> 1,171 faces/s, flagship 487 -> 914,
            probabilities within 4e-5 of fp32. Without native support it is several times
            slower, hence off there. Logits come back in float32 either way. The weights of
            convolutions and linear layers are cast to bfloat16 once, here: autocast would
            cast them again on every call, which at batch 1 cost more than the network
            itself (flagship, one thread, CPU time: 7.8 ms per face autocasting fp32 weights,
            4.2 ms with weights cast once, 5.1 ms in fp32; batch 64: 91 -> 46 ms).
            Autocast casts them to exactly these values, so the outputs are the same, bit
            for bit.
        channels_last: NHWC memory layout, which oneDNN's CPU convolutions prefer (simple_cnn
            319 -> 626 faces/s in the same measurement).
        fold_bn: fold each batch norm into the convolution before it (`torch.fx`'s
            conv-BN fusion), so inference runs one op where training ran two. The trained
            flagship in bf16 at batch 64 on a 2-core AMD EPYC VM: 1,182-1,318 faces/s
            unfolded, 1,632-1,659 folded (interleaved runs). fp32 results change by float
            rounding only. Models that torch.fx
            cannot trace run unfolded, with a debug log line.

    A folded network (a torch.fx graph, so without Python control flow) is also recorded
    with `torch.jit.trace` on its first call and run as that recording, the same operations
    without Python between them: the outputs are bit-identical, the trained flagship at batch
    1 takes 3.4 instead of 4.3 ms of CPU (one thread), and two threads run it at 412 instead
    of 321 faces/s, as the recording holds Python's lock once per call instead of once per
    layer. Where tracing fails or its first output differs, the network runs as it is.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        bf16: bool | None = None,
        channels_last: bool = True,
        fold_bn: bool = True,
    ):
        own = copy.deepcopy(model).eval()
        self.model = fold_batch_norm(own) if fold_bn else own
        self.bf16 = native_bf16() if bf16 is None else bf16
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.bf16:
            _cast_weights_bf16(self.model)
        self.name = "torch-bf16" if self.bf16 else "torch"
        # What runs: the traced graph once recorded (None: not yet; the model itself where
        # tracing does not apply or failed).
        self._run: torch.nn.Module | None = (
            None if isinstance(self.model, torch.fx.GraphModule) else self.model
        )
        self._trace_lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            if self._run is None:
                with self._trace_lock:
                    if self._run is None:
                        self._run = _traced(self.model, x)
            return self._run(x).float()


def _traced(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """`model` recorded by torch.jit.trace on `x`, or `model` itself where tracing fails or
    the recording's output on `x` is not exactly the model's (called under the runner's
    inference mode and autocast)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
            traced = torch.jit.trace(model, x, check_trace=False)
            same = torch.equal(traced(x), model(x))
    except Exception as err:  # TorchScript refuses some ops; the model runs as it is
        log.debug("running %s untraced: %s", type(model).__name__, err)
        return model
    if not same:
        log.debug("running %s untraced: the traced output differs", type(model).__name__)
        return model
    return traced


# The layers autocast runs in bfloat16 on the CPU and whose weights it casts on every call.
_AUTOCAST_BF16 = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def _cast_weights_bf16(model: torch.nn.Module) -> None:
    """Cast the weights and biases of convolutions and linear layers to bfloat16, in place.

    Under autocast these layers get bfloat16 copies of their parameters on every call;
    casting once gives the same values. Other layers (batch norm left unfolded, layer norm)
    keep float32 parameters, as autocast leaves them.
    """
    for module in model.modules():
        if isinstance(module, _AUTOCAST_BF16):
            module.to(torch.bfloat16)


class OnnxRunner:
    """Runs an ONNX model (a file or serialized bytes) with ONNX Runtime on the CPU.

    Args:
        model: path to a .onnx file, or its bytes (as `export.onnx_bytes` returns).
        threads: intra-op threads; None lets ONNX Runtime use every core.
        name: label for benchmarks and logs ("onnx", "onnx-int8").
    """

    def __init__(
        self, model: str | Path | bytes, *, threads: int | None = None, name: str = "onnx"
    ):
        import onnxruntime as ort  # imported late: not every user needs it

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning. On a busy machine spinning threads
        # fight the other processes for the cores: measured on 2 shared cores, int8 batch-64
        # throughput 1,294 faces/s sleeping against 926 spinning, batch-1 latency 3.0 ms
        # against 6.9.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(
                source, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            where = "the exported model" if isinstance(model, bytes) else str(model)
            raise CheckpointError(f"{where}: ONNX Runtime cannot load it ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.name = name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(None, {self.input_name: feed})[:1]
        return torch.from_numpy(logits).float()


def check_backend(name: str) -> str:
    """`name` if it is a known backend, else a ConfigError listing them."""
    if name not in BACKENDS:
        raise ConfigError(unknown("backend", name, BACKENDS))
    return name
