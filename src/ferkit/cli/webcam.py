"""`ferkit webcam`: live emotions from a camera, each face with its box, label and bars.

    ferkit webcam                       # the browser's camera, through `ferkit serve`'s page
    ferkit webcam --view window         # an OpenCV window (needs GUI OpenCV and a display)

`--view browser` starts the server and opens its page in webcam mode in your browser (the
headless OpenCV that ferkit installs has no windows; a browser is on every desktop). `--view
window` reads `--camera` with OpenCV and draws in a window: it needs `opencv-python` in place of
`opencv-python-headless`, and a display. `auto` (the default) takes the window where both are
there, else the browser. Ctrl-C stops the server; q or Esc closes the window.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from ferkit.errors import FerkitError

log = logging.getLogger(__name__)

WINDOW = "ferkit webcam (q to quit)"
VIEWS = ("auto", "browser", "window")
PAGE = "/?webcam"  # the server's page, starting its webcam mode


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ferkit.cli.recognizer_options import add_model_options
    from ferkit.cli.serve import add_server_options
    from ferkit.cli.vocabulary import add_smooth_option

    p = sub.add_parser(
        "webcam",
        help="live emotions from a camera: in the browser, or an OpenCV window",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--view",
        choices=VIEWS,
        default="auto",
        help="browser: the server's page; window: OpenCV (needs GUI OpenCV); auto: "
        "the window where it can open, else the browser",
    )
    p.add_argument(
        "--camera",
        default="0",
        help="window: camera index or stream URL/device path (0); in the browser, "
        "the browser asks which camera",
    )
    p.add_argument(
        "--no-open",
        action="store_true",
        help="browser: print the page's address instead of opening it",
    )
    add_model_options(p)
    add_server_options(p)
    add_smooth_option(p)  # the window's; the browser page shows each frame alone
    p.set_defaults(func=cmd_webcam)


def gui_problem() -> str | None:
    """Why no window can be shown here, or None if one can."""
    import cv2

    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if match and match.group(1).upper() == "NONE":
        return (
            "this OpenCV build has no GUI (opencv-python-headless, as ferkit installs); "
            "install opencv-python in its place for a window"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY is not set)"
    return None


def cmd_webcam(args: argparse.Namespace) -> int:
    problem = gui_problem()
    if args.view == "window" and problem:
        raise FerkitError(f"--view window: {problem}; or use --view browser")
    if args.view == "window" or (args.view == "auto" and problem is None):
        return run_window(args)
    if args.view == "auto":
        log.info("no OpenCV window here (%s): using the browser", problem)
    from ferkit.cli import serve

    return serve.cmd_serve(args, on_started=lambda url: open_page(url + PAGE, args.no_open))


def open_page(url: str, no_open: bool = False) -> None:
    """Open `url` in the user's browser; say where it is either way (no browser: nothing opens)."""
    import webbrowser

    opened = not no_open and webbrowser.open(url)
    what = "opened in your browser" if opened else "open it in a browser on this machine"
    print(f"ferkit webcam: {url} ({what}; Ctrl-C stops)", file=sys.stderr, flush=True)


def run_window(args: argparse.Namespace) -> int:
    import cv2

    from ferkit.cli.recognizer_options import make_recognizer
    from ferkit.inference.draw import annotate
    from ferkit.inference.tracking import Tracker
    from ferkit.inference.video import open_capture

    source = int(args.camera) if args.camera.isdigit() else args.camera
    cap = open_capture(source)
    if not cap.isOpened():
        raise FerkitError(f"cannot open camera {args.camera!r}; try another --camera index")
    rec = make_recognizer(args)
    tracker = Tracker(args.smooth)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                raise FerkitError(f"camera {args.camera!r} stopped sending frames")
            faces = tracker.update(rec.predict(frame, color="bgr").faces)
            cv2.imshow(WINDOW, annotate(frame, faces))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
    finally:
        cap.release()
        cv2.destroyAllWindows()
    return 0
