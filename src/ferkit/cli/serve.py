"""`ferkit serve`: the REST API and the web page, on http://127.0.0.1:8000 by default.

    ferkit serve --model runs/exp1                 # then open http://127.0.0.1:8000
    ferkit serve --model model.onnx --port 9000 --max-upload-mb 5 --timeout 10
    curl -F file=@photo.jpg http://127.0.0.1:8000/v1/predict

It listens on localhost only unless --host says otherwise; there is no authentication, so
bind to another address only on a network you trust. API reference: /docs, docs/serve.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from ferkit.errors import CheckpointError, FerkitError

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ferkit.cli.recognizer_options import add_model_options

    p = sub.add_parser(
        "serve",
        help="REST API and web page (upload a photo or use the webcam)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(p)
    add_server_options(p)
    p.set_defaults(func=cmd_serve)


def add_server_options(p: argparse.ArgumentParser) -> None:
    """--host, --port and the limits: the server `ferkit serve` and `ferkit webcam` start."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (8000)")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=10.0,
        metavar="MB",
        help="largest image accepted, in MiB (10); larger: HTTP 413",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="longest a request may take, in seconds (30); then HTTP 504",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="inferences run at once (default: one more than the cores); others queue",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        metavar="N",
        help="inferences waiting or running at most (16 per worker); then HTTP 503",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="PyTorch threads per inference (1): requests, not threads, use the cores",
    )


def cmd_serve(args: argparse.Namespace, on_started: Callable[[str], object] | None = None) -> int:
    """Serve until Ctrl-C; `on_started(url)` is called (in a thread) once it listens."""
    try:  # imported here, so `ferkit --help` does not pay for them
        from ferkit.serve import create_app
        from ferkit.serve.server import Server, listening_socket, server_config
    except ImportError as exc:
        raise FerkitError(
            f"`ferkit serve` needs {exc.name}: pip install fastapi uvicorn python-multipart"
        ) from None
    import cv2
    import torch

    from ferkit.cli.recognizer_options import make_recognizer
    from ferkit.inference.model_io import default_checkpoint

    if args.model is None:
        try:
            default_checkpoint()
        except CheckpointError:
            raise CheckpointError(
                "no model is shipped in this install of ferkit; pass one with "
                "--model CHECKPOINT|RUN_FOLDER|MODEL.onnx"
            ) from None
    if args.threads < 1 or any(n is not None and n < 1 for n in (args.workers, args.max_queue)):
        raise FerkitError("--threads, --workers and --max-queue must be at least 1")
    if args.max_upload_mb <= 0 or args.timeout <= 0:
        raise FerkitError("--max-upload-mb and --timeout must be positive")
    if not 0 <= args.port <= 65535:
        raise FerkitError(f"--port {args.port}: a port is 0..65535 (0: any free port)")
    sock = listening_socket(args.host, args.port)  # a taken port is said before the model loads
    # Several requests run at once, one per worker; torch's and OpenCV's own threads on top of
    # that would oversubscribe the cores (and spin while waiting), so each inference gets
    # --threads: YuNet with OpenCV's default 2 threads under 2 workers made 18 detections/s
    # of astronaut.png, with 1 thread 22 (2-core VM, loaded alike for both).
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    try:
        rec = make_recognizer(args)
    except BaseException:
        sock.close()
        raise
    app = create_app(
        rec,
        max_upload_mb=args.max_upload_mb,
        timeout_s=args.timeout,
        workers=args.workers,
        max_queue=args.max_queue,
    )
    if args.host not in LOOPBACK:
        log.warning(
            "listening on %s: anyone who can reach it can use it (no authentication)", args.host
        )
    level = "warning" if args.quiet else "info"
    server = Server(server_config(app, host=args.host, port=args.port, log_level=level))

    def started(port: int) -> None:  # the port bound: --port 0 takes any free one
        url = f"http://{args.host}:{port}"
        log.info("%r on %s (API docs at /docs)", rec, url)
        if on_started is not None:
            on_started(url)

    threading.Thread(target=_when_started, args=(server, args.port, started), daemon=True).start()
    server.run(sockets=[sock])  # a Ctrl-C: KeyboardInterrupt, 130 and one line
    return 0


def _when_started(server, port: int, callback: Callable[[int], object]) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        with contextlib.suppress(AttributeError, IndexError, OSError):
            port = server.servers[0].sockets[0].getsockname()[1]
        callback(port)
