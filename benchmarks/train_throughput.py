"""Training throughput of the whole pipeline (batched augmentation, model, loss, optimizer step)
per model, fp32 vs bf16 autocast, on this machine.

    .venv/bin/python benchmarks/train_throughput.py [--models simple_cnn,flagship] [--batches 20]
    .venv/bin/python benchmarks/train_throughput.py --models flagship --compile

Runs FERClassifier training steps on random uint8 faces with the default augmentation, after a
warm-up, and prints images/s. `--compile` adds bf16 steps through `torch.compile` (inductor;
its compile time, printed, is spent in the warm-up). (benchmarks/models.py measures the bare
model instead.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from ferkit.models import list_models
from ferkit.training.config import TrainConfig
from ferkit.training.module import FERClassifier


def images_per_second(
    model: str, precision: str, batches: int, batch_size: int, compiled: bool = False
) -> float:
    torch.manual_seed(0)
    cfg = TrainConfig(model=model, batch_size=batch_size, precision=precision)
    module = FERClassifier(cfg.to_dict())
    module.model.to(memory_format=torch.channels_last).train()
    if compiled:
        module.model = torch.compile(module.model)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (batch_size, 1, 48, 48), dtype=torch.uint8)
    labels = torch.randint(0, 7, (batch_size,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            logits = module(module.prepare(images, train=True))
            loss = module._loss(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(3):
        step()
    if compiled:
        print(f"{model}: compiled and warmed up in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * batch_size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="simple_cnn,fer_model0,vgg_13,resnet18_fer,flagship")
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="also bf16 with torch.compile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    names = list_models() if args.models == "all" else args.models.split(",")
    rows = []
    for name in names:
        row = {"model": name}
        runs = [("32", "32", False), ("bf16", "bf16", False)]
        runs += [("bf16_compiled", "bf16", True)] if args.compile else []
        for key, precision, compiled in runs:
            row[f"img_s_{key}"] = round(
                images_per_second(name, precision, args.batches, args.batch_size, compiled), 1
            )
        rows.append(row)
        if not args.json:
            line = f"{name:<18} fp32 {row['img_s_32']:>8.1f} img/s   bf16 {row['img_s_bf16']:>8.1f} img/s"
            if args.compile:
                line += f"   bf16 compiled {row['img_s_bf16_compiled']:>8.1f} img/s"
            print(line, flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    print(json.dumps({"machine": machine, "rows": rows}) if args.json else f"({machine})")


if __name__ == "__main__":
    main()
