"""Training and inference speed of every registered model on this machine's CPU.

    .venv/bin/python benchmarks/models.py                      # all models, a Markdown table
    .venv/bin/python benchmarks/models.py --models flagship,vgg_13 --json
    .venv/bin/python benchmarks/models.py --rounds 3           # on a busy machine

Per model, at its default input size, batch 64, channels-last memory format:
  train img/s   one SGD step (forward, cross-entropy, backward, update) on random data, in
                fp32 and under torch.autocast("cpu", dtype=torch.bfloat16)
  infer faces/s eval mode, torch.inference_mode, fp32 and bf16 autocast, no jit/compile
Each figure is the median of --repeats timed runs (fewer where they would take over
4 seconds, never under 3) after --warmup untimed ones, so one hiccup does not set it.
Other processes taking the CPU slow every figure down; with --rounds N all models are
measured N times, interleaved, and each figure is the best of its N medians. One round of
all models takes about 2.5 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from ferkit.models import count_macs, count_parameters, create_model, get_model_spec, list_models


def cpu_name() -> str:
    """The CPU's model name and its bf16 support, from /proc/cpuinfo where there is one."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        return name
    bf16 = "AVX-512 BF16" if "avx512_bf16" in flags else "no AVX-512 BF16"
    amx = "AMX" if "amx_bf16" in flags else "no AMX"
    return f"{name} ({bf16}, {amx})"


def median_seconds(
    fn: Callable[[], object], warmup: int, repeats: int, budget_s: float = 4.0
) -> float:
    """Median wall time of `fn()` over `repeats` calls (at least 3, fewer than `repeats`
    once `budget_s` is spent), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def train_images_per_s(
    model: nn.Module, x: torch.Tensor, *, bf16: bool, warmup: int, repeats: int
) -> float:
    """Images per second of full SGD training steps on batch `x`."""
    model.train()
    y = torch.randint(0, 7, (x.shape[0],))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        with _autocast(bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return x.shape[0] / median_seconds(step, warmup, repeats)


def infer_faces_per_s(
    model: nn.Module, x: torch.Tensor, *, bf16: bool, warmup: int, repeats: int
) -> float:
    """Faces per second of eval-mode forward passes on batch `x`."""
    model.eval()

    def forward() -> None:
        with torch.inference_mode(), _autocast(bf16):
            model(x)

    return x.shape[0] / median_seconds(forward, warmup, repeats)


def bench_model(
    name: str,
    *,
    batch: int = 64,
    warmup: int = 2,
    repeats: int = 5,
    channels_last: bool = True,
    **kwargs,
) -> dict:
    """All figures for model `name` (built with `kwargs`) at its default input size."""
    spec = get_model_spec(name)
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    row = {
        "model": name,
        "input_size": list(spec.input_size),
        "params": count_parameters(model),
        "macs": count_macs(model),
    }
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, spec.in_channels, *spec.input_size).to(memory_format=fmt)
    for bf16, tag in ((False, "fp32"), (True, "bf16")):
        row[f"train_{tag}"] = train_images_per_s(
            model, x, bf16=bf16, warmup=warmup, repeats=repeats
        )
    for bf16, tag in ((False, "fp32"), (True, "bf16")):
        row[f"infer_{tag}"] = infer_faces_per_s(
            model, x, bf16=bf16, warmup=warmup, repeats=repeats * 2
        )
    return row


def format_table(rows: list[dict]) -> str:
    """A Markdown table of benchmark rows (ready for docs/models.md)."""
    head = (
        "| model | input | params | MMACs/face | train img/s fp32 | train img/s bf16 "
        "| infer faces/s fp32 | infer faces/s bf16 |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        h, w = r["input_size"]
        lines.append(
            f"| {r['model']} | {h}x{w} | {r['params'] / 1e6:.2f}M | {r['macs'] / 1e6:.0f} "
            f"| {r['train_fp32']:.0f} | {r['train_bf16']:.0f} "
            f"| {r['infer_fp32']:.0f} | {r['infer_bf16']:.0f} |"
        )
    return "\n".join(lines)


FIGURES = ("train_fp32", "train_bf16", "infer_fp32", "infer_bf16")


def load_average() -> str:
    """The 1-minute load average, to show how busy the machine was ("?" where unknown)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated names (default: all registered)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="best of N rounds (default 1)")
    parser.add_argument("--no-channels-last", action="store_true", help="NCHW memory format")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else list_models()
    for name in names:
        get_model_spec(name)  # fail on a typo before spending minutes on the others
    torch.set_num_threads(args.threads)
    machine = f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}"
    print(f"# {machine}, batch {args.batch}, load average {load_average()}", file=sys.stderr)
    best: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name in names:
            row = bench_model(
                name,
                batch=args.batch,
                warmup=args.warmup,
                repeats=args.repeats,
                channels_last=not args.no_channels_last,
            )
            if name in best:
                row.update({k: max(row[k], best[name][k]) for k in FIGURES})
            best[name] = row
            print(f"  round {round_ + 1}: {name} done", file=sys.stderr, flush=True)
    print(f"# load average {load_average()} at the end", file=sys.stderr)
    rows = [best[name] for name in names]
    if args.json:
        for row in rows:
            print(json.dumps({**row, "machine": machine, "batch": args.batch}))
    else:
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
