"""`ferkit predict PATH...`: emotions of the faces in images, folders and videos.

    ferkit predict photo.jpg --model runs/exp1
    ferkit predict photos/ --annotate annotated/ --json > faces.json
    ferkit predict crops/ --no-detect --csv crops.csv
    ferkit predict clip.mp4 --annotate out.mp4 --csv timeline.csv --every 2 --smooth 0.6
    ferkit predict clip.mp4 --timeline timeline.png      # each person's emotions over time

A file that cannot be read is reported on stderr as one line naming it; the others go on, and
the exit code is 2 at the end if any failed (0 otherwise).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from ferkit.cli.recognizer_options import add_model_options, make_recognizer
from ferkit.cli.vocabulary import add_smooth_option, prints_data, say_for
from ferkit.errors import ConfigError, FerkitError, listed
from ferkit.outputs import (
    is_stdout,
    json_dumps,
    open_csv,
    partial_name,
    refuse_existing,
    refuse_inside,
    replaced_atomically,
)

log = logging.getLogger(__name__)

FILES_PER_BATCH = 32  # images whose faces share forward passes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="emotions of faces in images, folders (recursive) and videos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="image or video files, or folders (searched recursively, linked subfolders too)",
    )
    add_model_options(p)
    p.add_argument(
        "--no-detect", action="store_true", help="inputs are face crops (= --detector none)"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document")
    out.add_argument("--jsonl", action="store_true", help="print JSON lines (one per image/frame)")
    p.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="write one row per face to FILE ('-': print them, and the rest on stderr)",
    )
    p.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT",
        help="draw results: a folder, or a file for one input (.png/.jpg for an image, "
        ".mp4/.avi for a video)",
    )
    p.add_argument(
        "--every", type=int, default=1, metavar="N", help="video: analyse every Nth frame"
    )
    add_smooth_option(p)
    p.add_argument(
        "--timeline",
        type=Path,
        metavar="FILE",
        help="one video: plot each person's emotion probabilities over time into FILE "
        "(.png, .svg, .pdf)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --csv, --annotate and --timeline outputs that exist (refused otherwise; "
        "never the inputs themselves)",
    )
    p.set_defaults(func=cmd_predict)


def collect(paths: list[str], errors: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to its root) for every input; bad paths go to `errors`."""
    from ferkit.files import skipped_note, unreadable, walk_files
    from ferkit.imaging import IMAGE_SUFFIXES, is_url
    from ferkit.inference.video import VIDEO_SUFFIXES

    found = []
    for raw in paths:
        p = Path(raw)
        if is_url(raw) and not p.exists():
            errors.append(
                f"{raw}: a URL; ferkit predict reads files and folders: download it first"
            )
        elif p.is_dir():
            files, named, others = [], len(errors), []
            for f in walk_files(p, on_error=errors.append):
                if f.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    if not f.name.startswith("."):  # .DS_Store and the like: not worth a word
                        others.append(f)
                    continue
                if why := unreadable(f):
                    errors.append(f"{f}: {why}")  # named, not dropped: a photo the user has lost
                else:
                    files.append(f)
            if others:  # sidecars, RAW photos, notes: said once, not dropped unsaid
                log.info("%s: %s: not image or video types", p, skipped_note(others))
            if not files and len(errors) == named:
                errors.append(f"{p}: folder holds no image or video files")
            found += [(f, f.relative_to(p)) for f in files]
        elif why := unreadable(p):  # a FIFO would block the decoder forever
            errors.append(f"{p}: {why}")
        else:
            found.append((p, Path(p.name)))
    return found


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def cmd_predict(args: argparse.Namespace) -> int:
    from ferkit.inference.results import CsvRows
    from ferkit.inference.video import is_video
    from ferkit.progress import bar as progress_bar

    if args.every < 1:
        raise ConfigError(f"--every {args.every}: analyse every Nth frame, N >= 1")
    if not 0.0 <= args.smooth < 1.0:
        raise ConfigError(f"--smooth {args.smooth}: the weight of the past, in [0, 1)")
    args.csv_stdout = is_stdout(args.csv)
    if args.csv_stdout:
        if args.json or args.jsonl:
            raise ConfigError("--csv - and --json/--jsonl both print on stdout; choose one")
        args.csv = None  # no file: nothing to refuse, replace or name as written
    errors: list[str] = []
    inputs = collect(args.paths, errors)
    for msg in errors:
        print(f"ferkit predict: error: {msg}", file=sys.stderr)
    if not inputs:
        return 2
    videos = [i for i in inputs if is_video(i[0])]
    images = [i for i in inputs if not is_video(i[0])]
    video_out = _check_outputs(args, images, videos)
    rec = make_recognizer(args)
    started = time.time()
    document: list[dict] = []
    tally = Tally()
    tally.unread = len(errors)  # paths and files already named as unreadable
    # Ctrl-C keeps the rows done so far under a name of their own; --csv stays as it was.
    partial = partial_name(args.csv) if args.csv else None
    left = "is as it was" if args.csv and args.csv.exists() else "was not written"
    rows = None
    try:
        with ExitStack() as stack:
            if args.csv:  # written beside it; replaces it only when the run is done
                tmp = stack.enter_context(replaced_atomically(args.csv, keep_interrupted=partial))
                rows = CsvRows(stack.enter_context(open_csv(tmp)), rec.labels)
            elif args.csv_stdout:
                rows = CsvRows(sys.stdout, rec.labels)
            # one image: no bar; --no-progress turns every bar off (ferkit.progress)
            bar = stack.enter_context(
                progress_bar(total=len(images), unit="img", show=len(images) > 1)
            )
            for chunk in _chunks(images, FILES_PER_BATCH):
                _predict_images(rec, chunk, args, rows, document, errors, tally)
                bar.update(len(chunk))
            if len(tally.heif) > 1:  # one line for an iPhone library, not one per photo
                more = tally.heif[1:]
                _report(
                    errors,
                    f"{len(more)} more HEIC/HEIF photo(s) not read, for the same "
                    f"reason: {listed(more)}",
                )
            for path, rel in videos:
                _predict_video(rec, path, rel, args, rows, document, errors, video_out)
            if rows is not None and not rows.written:
                raise _NothingRead  # every input failed: no CSV of a header alone
    except _NothingRead:
        args.csv = None  # and no "wrote" line
    except KeyboardInterrupt:
        done = f" after {tally.images:,} of {len(images):,} images" if images else ""
        _say_interrupted(args.csv, partial, left, rows, done)
        raise
    if args.json:
        sys.stdout.write(json_dumps(document, indent=2))
        print()
    _say_written(args, images, since=started)
    if tally.images:
        # The summary is for people: on stderr when stdout carries JSON or CSV.
        say = say_for(args)
        for line in tally.lines(detecting=rec.detector is not None):
            say(line)
    return 2 if errors else 0


def _check_outputs(args, images: list, videos: list) -> Path | None:
    """Refuse --annotate/--timeline/--csv that do not fit the inputs, or exist, before any
    work; returns the video file --annotate names (None: a folder, an image file or none)."""
    from ferkit.inference.video import is_video

    video_out = args.annotate if args.annotate and is_video(args.annotate) else None
    if video_out and (len(videos) != 1 or images):
        raise ConfigError(
            f"--annotate {args.annotate} names one video file; give exactly one "
            "video, or a folder to --annotate"
        )
    if _names_an_image(args.annotate) and (len(images) != 1 or videos):
        raise ConfigError(
            f"--annotate {args.annotate} names one image file; give exactly one "
            "image, or a folder to --annotate"
        )
    folder = args.annotate and not video_out and not _names_an_image(args.annotate)
    if folder and args.annotate.exists() and not args.annotate.is_dir():
        raise ConfigError(
            f"--annotate {args.annotate} is a file; annotated images go into a folder "
            "(or name a .png/.jpg file for one image, an .mp4/.avi file for one video)"
        )
    if folder:  # inside a folder of inputs, the next run would read the copies as photos
        for source in (Path(p) for p in args.paths if Path(p).is_dir()):
            refuse_inside(args.annotate, source, error=ConfigError)
    if args.timeline:
        from ferkit.evaluation.plots import plot_format_of

        if len(videos) != 1 or images:
            raise ConfigError(f"--timeline {args.timeline} plots one video; give exactly one")
        plot_format_of(args.timeline)  # a suffix matplotlib cannot write: refused now
    _refuse_collisions(args, images, videos, video_out)
    _refuse_existing(args, images, videos, video_out)
    return video_out


def _say_interrupted(csv, partial: Path | None, left: str, rows, done: str) -> None:
    """Ctrl-C: the CSV rows so far were kept as `partial` (a header alone is removed); say so."""
    if partial is None or not partial.exists():
        return
    if not rows.written:
        partial.unlink()  # a header alone is no result
        return
    print(
        f"ferkit predict: interrupted{done}; wrote {partial} with the rows so far ({csv} {left})",
        file=sys.stderr,
    )


class _NothingRead(Exception):
    """No input could be analysed: the CSV is not written (an old one stays as it was)."""


# A face crop (FER-2013 is 48x48, RAF-DB's aligned faces 100x100) is small and about square;
# a detector rarely finds a face that fills its whole image.
CROP_MAX_SIDE = 128
CROP_ASPECT = 1.5


def looks_like_face_crop(size: tuple[int, int]) -> bool:
    """True for a small, roughly square image (at most CROP_MAX_SIDE px): a face crop."""
    w, h = size
    return max(w, h) <= CROP_MAX_SIDE and max(w, h) <= CROP_ASPECT * min(w, h)


class Tally:
    """Counts over the images of one `ferkit predict` run, for its summary line."""

    def __init__(self) -> None:
        self.images = self.faces = self.no_face = self.crop_like = 0
        self.unread = 0  # inputs that could not be read (each named on stderr)
        self.heif: list[Path] = []  # HEIC/HEIF photos not read for want of pillow-heif
        self.labels: Counter[str] = Counter()  # faces per top label

    def add(self, result) -> None:
        self.images += 1
        self.faces += len(result)
        self.no_face += not len(result)
        self.crop_like += looks_like_face_crop(result.size)
        self.labels.update(face.label for face in result)

    def lines(self, *, detecting: bool) -> list[str]:
        """The summary line, and a hint when most images look like face crops: a detector
        misses many of them, and frames the faces it finds tighter than the crop itself."""
        images = f"{self.images} image{'' if self.images == 1 else 's'}"
        faces = f"{self.faces} face{'' if self.faces == 1 else 's'}"
        unread = f"; {self.unread} not read (see above)" if self.unread else ""
        out = [f"{images}, {faces}, {self.no_face} without a face{unread}"]
        if self.images > 1 and self.labels:  # one image's faces are listed above it
            counts = ", ".join(f"{label} {n}" for label, n in self.labels.most_common())
            out.append(f"faces by label: {counts}")
        if detecting and self.images and self.crop_like * 2 >= self.images:
            out.append(
                f"hint: {self.crop_like} of the {self.images} images are small (at most "
                f"{CROP_MAX_SIDE} px) and about square, like face crops; if they are crops, "
                "pass --detector none to classify each whole image as one face"
            )
        return out


def _say_written(args, images, since: float) -> None:
    """A "wrote" line per output of this run (each video says its own): the CSV, and the
    annotated image, or how many under the folder. On stderr when stdout carries data."""
    say = say_for(args)
    if args.csv:
        say(f"wrote {args.csv}")
    if not (args.annotate and images):
        return
    targets = (_annotated_image(args.annotate, rel) for _, rel in images)
    done = [p for p in targets if p.is_file() and p.stat().st_mtime >= since]
    if len(done) == 1:
        say(f"wrote {done[0]}")
    elif done:
        say(f"wrote {len(done)} annotated images under {args.annotate}")


ANNOTATED_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _names_an_image(out: Path | None) -> bool:
    """--annotate names one image file (not a folder that happens to end in .png)."""
    return bool(out) and out.suffix.lower() in ANNOTATED_IMAGE_SUFFIXES and not out.is_dir()


def _annotated_image(out: Path, rel: Path) -> Path:
    """Where an image's annotated copy goes: `out` itself when it names an image file (one
    image input), else `rel` under the folder `out`, as PNG unless it is a JPEG or PNG."""
    if _names_an_image(out):
        return out
    path = out / rel
    return path if path.suffix.lower() in ANNOTATED_IMAGE_SUFFIXES else path.with_suffix(".png")


def _video_out(args, rel: Path, video_out: Path | None) -> Path | None:
    return video_out or (args.annotate / rel.with_suffix(".mp4") if args.annotate else None)


def _refuse_collisions(args, images, videos, video_out) -> None:
    """Two outputs never share a file: `a/x.png b/x.png` (or `x.png x.gif`) would both be
    drawn to OUT/x.png, the second over the first, and `--annotate x.png --csv x.png` would
    put the table over the picture. Checked even with --overwrite."""
    owned = [("--csv", args.csv), ("--timeline", args.timeline)]
    if args.annotate:  # each input's annotated copy, named by the input
        owned += [(str(path), _annotated_image(args.annotate, rel)) for path, rel in images]
        owned += [(str(path), _video_out(args, rel, video_out)) for path, rel in videos]
    seen: dict[Path, str] = {}
    for who, out in owned:
        if out is not None and (first := seen.setdefault(out.resolve(), who)) != who:
            raise ConfigError(
                f"{first} and {who} would both be written to {out}; "
                "rename one, or write them in separate runs"
            )


def _refuse_existing(args, images, videos, video_out) -> None:
    """Outputs are never replaced silently (nor folders ever): list those that exist before
    any work is done."""
    targets = [p for p in (args.csv, args.timeline) if p]
    if args.annotate:
        targets += [_annotated_image(args.annotate, rel) for _, rel in images]
        targets += [_video_out(args, rel, video_out) for _, rel in videos]
    refuse_existing(
        targets,
        error=ConfigError,
        hint="pass --overwrite to replace, or choose another --csv/--annotate/--timeline",
        overwrite=args.overwrite,
        inputs=[path for path, _ in images + videos],  # --annotate photos/ into photos/
    )


def _predict_images(rec, chunk, args, rows, document, errors, tally) -> None:
    from ferkit.imaging import HeifSupportError

    frames, names = [], []
    for path, rel in chunk:
        try:
            frames.append(rec.load(path))
            names.append((path, rel))
        except HeifSupportError as exc:  # the first says what to install, the rest are counted
            if not tally.heif:
                _report(errors, exc)
            tally.heif.append(path)
            tally.unread += 1
        except FerkitError as exc:
            _report(errors, exc)
            tally.unread += 1
    if not frames:
        return
    for result, (_, rel) in zip(rec.predict(frames), names, strict=True):
        if args.json:
            document.append(result.to_dict())
        elif args.jsonl:
            print(json_dumps(result.to_dict()), flush=False)
        elif not prints_data(args):  # `--csv -`: the rows alone on stdout
            print(result.text())
        if rows is not None:
            rows.write(result.rows())
        tally.add(result)  # after its rows: an interrupted run's count matches its CSV
        if args.annotate:
            try:
                result.save(_annotated_image(args.annotate, rel))
            except FerkitError as exc:
                _report(errors, exc)


def _predict_video(rec, path, rel, args, rows, document, errors, video_out) -> None:
    from ferkit.inference.video import process_video

    out = _video_out(args, rel, video_out)

    def on_frame(r) -> None:
        if r.analysed and args.jsonl:
            print(json_dumps(r.to_dict()))

    try:
        analysis = process_video(
            rec,
            path,
            every=args.every,
            smooth=args.smooth,
            annotate_to=out,
            csv_rows=rows,
            progress=not args.no_progress,
            on_frame=on_frame,
        )
    except FerkitError as exc:
        _report(errors, exc)
        return
    if args.json:
        frames = [r.to_dict() for r in analysis.results]
        people = [p.to_dict() for p in analysis.people()]
        document.append({"file": str(path), "frames": frames, "people": people})
    if args.timeline:
        _plot_timeline(analysis, args.timeline)
    if not prints_data(args):  # else stdout carries data: no summary, as for an image
        print(analysis.text())
    say = say_for(args)
    for output in analysis.outputs:
        say(f"wrote {output}")


def _report(errors: list[str], exc: Exception | str) -> None:
    errors.append(str(exc))
    print(f"ferkit predict: error: {exc}", file=sys.stderr)


def _plot_timeline(analysis, path: Path) -> None:
    from ferkit.evaluation import plots

    fig = plots.emotion_timeline(analysis.to_pandas(), list(analysis.labels), title=analysis.path)
    plots.save(fig, path)
    analysis.outputs.append(str(path))
