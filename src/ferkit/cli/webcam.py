"""`ferkit webcam [--camera 0]`: a live window with each face's box, label and bars.

Needs a display and an OpenCV build with a GUI (`opencv-python`, not the `-headless` wheel
ferkit depends on); both are checked first, with a message saying what is missing. Press q or
Esc to quit.
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ferkit.cli.recognizer_options import add_model_options

    p = sub.add_parser("webcam", help="live emotions from a camera, in a window")
    p.add_argument("--camera", default="0", help="camera index or stream URL/device path (0)")
    add_model_options(p)
    p.add_argument("--smooth", type=float, default=0.6, help="EMA weight of past frames (0.6)")
    p.set_defaults(func=run)


def gui_problem() -> str | None:
    """Why no window can be shown here, or None if one can."""
    import cv2

    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if match and match.group(1).upper() == "NONE":
        return (
            "this OpenCV build has no GUI (opencv-python-headless); install opencv-python in "
            "its place to use `ferkit webcam`, or record with `ferkit predict VIDEO --annotate`"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY is not set); run it on a desktop session"
    return None


def run(args: argparse.Namespace) -> int:
    import cv2

    from ferkit.cli.recognizer_options import make_recognizer
    from ferkit.inference.draw import annotate
    from ferkit.inference.video import Smoother

    problem = gui_problem()
    if problem:
        raise FerkitError(problem)
    source = int(args.camera) if args.camera.isdigit() else args.camera
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise FerkitError(f"cannot open camera {args.camera!r}; try another --camera index")
    rec = make_recognizer(args)
    smoother = Smoother(args.smooth)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                raise FerkitError(f"camera {args.camera!r} stopped sending frames")
            faces, _ = smoother.update(rec.predict(frame, color="bgr"))
            cv2.imshow(WINDOW, annotate(frame, faces))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
    finally:
        cap.release()
        cv2.destroyAllWindows()
    return 0
