"""A bounded load test of `ferkit serve` on loopback: latency percentiles, throughput, errors.

    .venv/bin/python benchmarks/serve_load.py [--requests 500] [--concurrency 8]
        [--model CKPT] [--arch simple_cnn] [--image examples/astronaut.png] [--url URL] [--json]

Starts `ferkit serve` on 127.0.0.1 and a free port in a child process (so the client's threads
do not share the server's GIL), waits for /v1/health, then sends --requests multipart uploads
of --image from --concurrency threads, each on its own keep-alive connection, and prints
p50/p95/p99 latency, requests/s and the error count (goal: 0 errors). --url measures a server
that is already running instead.

Without --model the shipped model is used; where none is shipped, a random-weight --arch model
(the speed is the architecture's; its predictions mean nothing).

    .venv/bin/python benchmarks/serve_load.py --soak 180 [--concurrency 8]

--soak SECONDS: a bounded loop for that long mixing, per ten requests, six photo uploads, a
decompression bomb (a 3.3 MB PNG of 29,000 x 29,000 pixels: 413 expected), random bytes (415),
a truncated photo (422) and JSON nested 50,000 deep (422). An error is any other answer; the
report adds the server's resident memory (RSS) before and after and its peak.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.png"
MB = 1024 * 1024


def model_path(args, tmp: Path) -> str:
    """--model, else the shipped model, else a random-weight --arch checkpoint in `tmp`."""
    if args.model:
        return args.model
    from ferkit.errors import CheckpointError
    from ferkit.inference.model_io import default_checkpoint

    try:
        return str(default_checkpoint())
    except CheckpointError:
        import torch

        from ferkit.models import create_model, get_model_spec, save_checkpoint

        torch.manual_seed(0)
        spec = get_model_spec(args.arch)
        path = save_checkpoint(
            tmp / f"{args.arch}.pt",
            create_model(args.arch).eval(),
            input_size=spec.input_size,
            mean=spec.mean,
            std=spec.std,
            in_channels=spec.in_channels,
        )
        print(f"no shipped model: random-weight {args.arch}", file=sys.stderr)
        return str(path)


def start_server(
    model: str, workers: int | None, options: str = ""
) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "ferkit", "-q", "serve", "--model", model, "--port", str(port)]
    if workers:
        cmd += ["--workers", str(workers)]
    cmd += shlex.split(options)
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"ferkit serve exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/health")
            if conn.getresponse().status == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    sys.exit("ferkit serve did not answer /v1/health within 120 s")


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def load(url: str, body: bytes, ctype: str, n: int, concurrency: int) -> dict:
    """Send `n` photo uploads from `concurrency` threads; latencies (s) and errors."""
    return mixed(url, [("photo", body, ctype, 200)], concurrency, requests=n)


def hostile_cases(photo: bytes) -> list[tuple[str, bytes, str, int]]:
    """(kind, body, content type, expected status): what --soak mixes with the photos."""
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    from hostile import bomb_png

    nested = ("[" * 50_000 + "]" * 50_000).encode()
    return [
        ("bomb", *multipart(bomb_png(29_000, 29_000), "bomb.png"), 413),
        ("random_bytes", *multipart(os.urandom(64 * 1024), "noise.jpg"), 415),
        ("truncated", *multipart(photo[: len(photo) // 2], "half.png"), 422),
        ("nested_json", nested, "application/json", 422),
    ]


def mixed(
    url: str, cases: list, concurrency: int, *, requests: int = 0, seconds: float = 0
) -> dict:
    """Send `cases` in turn from `concurrency` threads, `requests` in all or for `seconds`.

    Returns the wall time, latencies (s) per kind, and errors (an unexpected status or a
    failed connection)."""
    host = urlsplit(url)
    local = threading.local()
    latencies: dict[str, list[float]] = {kind: [] for kind, *_ in cases}
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    def one(i: int) -> bool:
        if seconds and time.perf_counter() > deadline:
            return False
        kind, body, ctype, expected = cases[i % len(cases)]
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        t0 = time.perf_counter()
        try:
            local.conn.request("POST", "/v1/predict", body, {"Content-Type": ctype})
            resp = local.conn.getresponse()
            payload = resp.read()
            if resp.status != expected or (expected == 200 and "faces" not in json.loads(payload)):
                errors.append(f"{kind}: HTTP {resp.status}: {payload[:200]!r}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            local.conn = None  # reconnect on the next request
            return True
        if resp.will_close:
            local.conn = None
        latencies[kind].append(time.perf_counter() - t0)
        return True

    turns = itertools.count()  # one sequence for all threads: the cases keep their mix

    def worker(_: int) -> None:
        for i in turns:
            if (requests and i >= requests) or not one(i):
                return

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "errors": errors}


def rss_mb(pid: int) -> dict[str, float]:
    """Resident memory of process `pid` now and at its peak, in MiB (Linux /proc)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) process `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else (values or [0.0])[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests in all (500)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
    parser.add_argument("--model", help="checkpoint, run folder or .onnx (default: shipped)")
    parser.add_argument("--arch", default="flagship", help="random-weight arch if none shipped")
    parser.add_argument("--image", default=str(PHOTO), help="the photo sent (astronaut.png)")
    parser.add_argument("--workers", type=int, help="server inference workers (default: cores)")
    parser.add_argument(
        "--serve-options",
        default="",
        metavar="OPTIONS",
        help='more `ferkit serve` options, e.g. "--detect-side 320"',
    )
    parser.add_argument("--url", help="an already running server instead of starting one")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="mix photos with bombs and garbage for this long (see above)",
    )
    args = parser.parse_args()
    if args.soak:
        return soak(args)

    image = Path(args.image)
    body, ctype = multipart(image.read_bytes(), image.name)
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        url = args.url
        if url is None:
            proc, url = start_server(model_path(args, Path(tmp)), args.workers, args.serve_options)
        try:
            load(url, body, ctype, min(16, args.requests), args.concurrency)  # warm-up
            server0 = cpu_s(proc.pid) if proc else None
            client0 = time.process_time()
            r = load(url, body, ctype, args.requests, args.concurrency)
            client_cpu = time.process_time() - client0
            server_cpu = cpu_s(proc.pid) - server0 if proc else None
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    lat = [v * 1000 for v in r["latencies"]["photo"]]
    report = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "image": f"{image.name} ({len(body) / 1024:.0f} KiB)",
        "cpus": os.cpu_count(),
        "p50_ms": round(percentile(lat, 50), 1),
        "p95_ms": round(percentile(lat, 95), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "throughput_rps": round(len(lat) / r["seconds"], 1),
        "errors": len(r["errors"]),
        "first_errors": r["errors"][:3],
        # Where the two cores went: CPU ms per request of the server and of this client.
        "server_cpu_ms_per_request": (
            round(server_cpu * 1000 / args.requests, 1) if server_cpu is not None else None
        ),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / args.requests, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['requests']} requests, {report['concurrency']} concurrent, {report['image']}, "
        f"{report['cpus']} CPUs"
    )
    print(f"latency ms: p50 {report['p50_ms']}  p95 {report['p95_ms']}  p99 {report['p99_ms']}")
    print(f"throughput: {report['throughput_rps']} requests/s   errors: {report['errors']}")
    server_ms = report["server_cpu_ms_per_request"]
    print(
        f"CPU per request: server {server_ms if server_ms is not None else '?'} ms, "
        f"this client {report['client_cpu_ms_per_request']} ms"
    )
    for err in report["first_errors"]:
        print(f"  {err}")


def soak(args) -> None:
    """--soak: the bounded mixed loop, with the server's memory before and after."""
    photo = Path(args.image).read_bytes()
    good = ("photo", *multipart(photo, Path(args.image).name), 200)
    bad = hostile_cases(photo)
    cases = [good] * 3 + [bad[0]] + [good] * 2 + [bad[1], bad[2]] + [good, bad[3]]  # 6 of 10 photos
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            sys.exit("--soak starts its own server (it reads the server's memory)")
        proc, url = start_server(model_path(args, Path(tmp)), args.workers, args.serve_options)
        try:
            mixed(url, cases, args.concurrency, requests=4 * len(cases))  # warm-up
            before = rss_mb(proc.pid)
            r = mixed(url, cases, args.concurrency, seconds=args.soak)
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    n = sum(len(v) for v in r["latencies"].values()) + len(r["errors"])
    kinds = {}
    for kind, values in r["latencies"].items():
        ms = [v * 1000 for v in values]
        kinds[kind] = {
            "n": len(ms),
            "p50_ms": round(percentile(ms, 50), 1),
            "p99_ms": round(percentile(ms, 99), 1),
        }
    report = {
        "seconds": round(r["seconds"], 1),
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "requests": n,
        "throughput_rps": round(n / r["seconds"], 1),
        "kinds": kinds,
        "errors": len(r["errors"]),
        "first_errors": r["errors"][:3],
        "server_rss_mb": {
            "before": before["VmRSS"],
            "after": after["VmRSS"],
            "peak": after["VmHWM"],
        },
        "rss_growth_mb": round(after["VmRSS"] - before["VmRSS"], 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
