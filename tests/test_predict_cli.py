"""`ferkit predict` on images, folders and videos; every kind of bad input; `ferkit webcam`."""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import ASTRONAUT
from ferkit.cli import main
from ferkit.imaging import heif_support
from ferkit.inference import EmotionRecognizer
from ferkit.inference.video import analyse_video, process_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 2-second 10 fps 320x240 clip: the astronaut's face sliding right on a gray canvas."""
    face = cv2.resize(cv2.imread(str(ASTRONAUT))[40:200, 150:310], (120, 120))
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    assert writer.isOpened()
    for i in range(20):
        frame = np.full((240, 320, 3), 100, np.uint8)
        frame[60:180, 20 + 5 * i : 140 + 5 * i] = face
        writer.write(frame)
    writer.release()
    return path


def huge_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black gray PNG of any size, written row by row (never held in memory)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    comp, row = zlib.compressobj(9), bytes(width + 1)  # filter byte 0 + a row of zeros
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_example_photo(checkpoint, capsys):
    code, out, _ = run_cli(["predict", ASTRONAUT, "--model", checkpoint], capsys)
    assert code == 0 and "astronaut.png: 1 face" in out


def test_tta_option(checkpoint, capsys):
    scores = {}
    for tta in ([], ["--tta"], ["--tta", "tencrop"]):
        code, out, _ = run_cli(
            ["predict", ASTRONAUT, "--model", checkpoint, "--json", *tta], capsys
        )
        assert code == 0
        scores[" ".join(tta)] = json.loads(out)[0]["faces"][0]["emotions"]
    assert len({json.dumps(s, sort_keys=True) for s in scores.values()}) == 3  # three views
    code, _, err = run_cli(["predict", ASTRONAUT, "--tta", "fivecrop"], capsys)
    assert code == 2 and "tencrop" in err


def test_json_document_csv_and_annotations(checkpoint, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.open(ASTRONAUT).save(folder / "sub" / "a.jpg")
    Image.new("RGB", (64, 48), "gray").save(folder / "empty_scene.png")
    out_csv, ann = tmp_path / "faces.csv", tmp_path / "annotated"
    code, out, _ = run_cli(
        [
            "predict",
            folder,
            "--model",
            checkpoint,
            "--json",
            "--csv",
            out_csv,
            "--annotate",
            ann,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0
    doc = {Path(r["file"]).name: r["faces"] for r in json.loads(out)}
    assert len(doc["a.jpg"]) == 1 and doc["empty_scene.png"] == []
    assert set(doc["a.jpg"][0]) == {"box", "label", "confidence", "emotions", "score", "landmarks"}
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and rows[0]["file"].endswith("a.jpg") and rows[0]["label"]
    assert (ann / "sub" / "a.jpg").is_file() and (ann / "empty_scene.png").is_file()

    # a second run never replaces those outputs silently, and touches nothing when refused
    before = out_csv.read_bytes()
    again = ["predict", folder, "--model", checkpoint, "--csv", out_csv, "--annotate", ann]
    code, _, err = run_cli([*again, "--no-progress"], capsys)
    assert code == 2 and "--overwrite" in err and out_csv.read_bytes() == before
    code, _, _ = run_cli([*again, "--no-progress", "--overwrite"], capsys)
    assert code == 0


def test_interrupted_run_keeps_rows_so_far(checkpoint, tmp_path, capsys, monkeypatch):
    """Ctrl-C in a long folder run keeps the rows done under out.partial.csv (never under
    --csv, which stays as it was) and says so; exit 130."""
    import ferkit.cli.predict as predict_cli

    folder = tmp_path / "crops"
    folder.mkdir()
    n = predict_cli.FILES_PER_BATCH + 5  # two chunks: Ctrl-C arrives in the second
    for i in range(n):
        Image.fromarray(np.full((48, 48), 3 * i, np.uint8)).save(folder / f"c{i:03}.png")
    real, calls = predict_cli._predict_images, []

    def interrupted_in_second_chunk(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(predict_cli, "_predict_images", interrupted_in_second_chunk)
    out_csv = tmp_path / "out.csv"
    (tmp_path / "out.partial.csv").write_text("a user's file\n")  # never replaced either
    base = ["predict", folder, "--model", checkpoint, "--no-detect", "--no-progress"]
    code, _, err = run_cli([*base, "--csv", out_csv], capsys)
    kept = tmp_path / "out.partial-2.csv"
    assert code == 130 and not out_csv.exists()
    assert f"after {predict_cli.FILES_PER_BATCH} of {n} images; wrote {kept}" in err
    assert f"({out_csv} was not written)" in err
    rows = list(csv.DictReader(kept.open()))
    assert len(rows) == predict_cli.FILES_PER_BATCH and rows[0]["file"].endswith("c000.png")
    assert (tmp_path / "out.partial.csv").read_text() == "a user's file\n"
    assert not list(tmp_path.glob(".partial-*"))  # no hidden temporary file left

    # with --overwrite, the old CSV stays whole until a run finishes
    out_csv.write_text("old\n")
    calls.clear()
    code, _, err = run_cli([*base, "--csv", out_csv, "--overwrite"], capsys)
    assert code == 130 and out_csv.read_text() == "old\n" and f"({out_csv} is as it was)" in err
    assert len(list(csv.DictReader((tmp_path / "out.partial-3.csv").open()))) == len(rows)

    # interrupted before any row: nothing to keep, nothing written
    calls[:] = [1]  # the first chunk is now the interrupted one
    code, _, err = run_cli([*base, "--csv", tmp_path / "new.csv"], capsys)
    assert code == 130 and "wrote" not in err and not list(tmp_path.glob("new*"))


def test_jsonl_no_detect_on_crops(checkpoint, tmp_path, capsys):
    for i in range(3):
        Image.fromarray(np.full((48, 48), 40 * i, np.uint8)).save(tmp_path / f"crop{i}.png")
    code, out, _ = run_cli(
        ["predict", tmp_path, "--model", checkpoint, "--no-detect", "--jsonl"], capsys
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 3
    assert all(r["faces"][0]["box"] == [0, 0, 48, 48] for r in lines)


def test_bad_inputs_reported_others_go_on(checkpoint, tmp_path, capsys):
    """Each bad file is one stderr line naming it; good files still get results; exit 2."""
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "notes.txt.png").write_text("this is not an image")
    (d / "empty.jpg").write_bytes(b"")
    Image.open(ASTRONAUT).save(d / "full.jpg")
    (d / "truncated.jpg").write_bytes((d / "full.jpg").read_bytes()[:2000])
    Image.new("L", (1, 1)).save(d / "tiny.png")
    photo = Image.open(ASTRONAUT)
    photo.convert("L").save(d / "gray.png")
    photo.convert("RGBA").save(d / "rgba.png")
    Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).save(d / "deep16.png")
    huge_png(d / "huge.png", 20000, 20000)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    code, out, err = run_cli(
        [
            "predict",
            d,
            tmp_path / "missing.jpg",
            "https://example.com/face.jpg",
            "--model",
            checkpoint,
            "--jsonl",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2
    results = {Path(r["file"]).name: r["faces"] for r in map(json.loads, out.splitlines())}
    for good in ("full.jpg", "gray.png", "rgba.png", "deep16.png"):
        assert len(results[good]) == 1, good
    assert results["tiny.png"] == [] and "huge.png" not in results
    errors = err.strip().splitlines()
    for bad in ("notes.txt.png", "empty.jpg", "truncated.jpg", "broken.mp4", "missing.jpg"):
        assert sum(bad in line for line in errors) == 1, (bad, errors)
    (text,) = [line for line in errors if "notes.txt.png" in line]
    assert "not an image format ferkit reads (JPEG, PNG," in text  # what it reads, not "PIL"
    # 400 MP is over Pillow's decompression-bomb limit: refused from its header
    (huge,) = [line for line in errors if "huge.png" in line]
    assert "400 MP" in huge and "89.5 MP" in huge
    # a URL is named as typed (not as the path "https:/example.com/..."), with what to do
    assert "https://example.com/face.jpg: a URL; ferkit predict reads files" in err


def test_linked_folders_are_read_and_broken_links_named(checkpoint, tmp_path, capsys):
    """A photo library assembled from links: a linked folder's photos are analysed (rglob
    skipped them unsaid), a link loop ends, and a link to a missing photo is named, not
    dropped; the summary counts it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.open(ASTRONAUT).save(elsewhere / "linked.jpg")
    d = tmp_path / "photos"
    d.mkdir()
    Image.open(ASTRONAUT).save(d / "own.jpg")
    (d / "2024").symlink_to(elsewhere, target_is_directory=True)
    (d / "again").symlink_to(elsewhere, target_is_directory=True)  # the same folder twice
    (d / "loop").symlink_to(d, target_is_directory=True)
    (d / "gone.jpg").symlink_to(tmp_path / "unmounted" / "gone.jpg")
    code, out, err = run_cli(["predict", d, "--model", checkpoint, "--no-progress"], capsys)
    assert code == 2
    assert "photos/2024/linked.jpg: 1 face" in out and "photos/own.jpg: 1 face" in out
    assert "again/linked.jpg" not in out and "loop" not in out  # each real folder once
    assert "gone.jpg: a broken link (its target " in err
    assert "2 images, 2 faces, 0 without a face; 1 not read (see above)" in out


def test_a_folder_that_cannot_be_listed_is_named(checkpoint, tmp_path, capsys, monkeypatch):
    """os.walk skips a folder it cannot list (no permission) without a word; it is named,
    and the rest is analysed. (As root every folder lists: the refusal is simulated.)"""
    import os

    d = tmp_path / "photos"
    (d / "private").mkdir(parents=True)
    Image.open(ASTRONAUT).save(d / "own.jpg")
    Image.open(ASTRONAUT).save(d / "private" / "hidden.jpg")
    scandir = os.scandir

    def refusing(path="."):
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    code, out, err = run_cli(["predict", d, "--model", checkpoint, "--no-progress"], capsys)
    assert code == 2 and "photos/own.jpg: 1 face" in out
    assert f"{d / 'private'}: cannot list it (Permission denied); skipped" in err


def test_phone_and_browser_formats_are_read_from_folders(checkpoint, tmp_path, capsys):
    """iPhones save HEIC, Windows browsers JPEG as .jfif, and AVIF spreads: a folder search
    skipped all three unsaid. Each is read, upright, as its JPEG is."""
    assert heif_support()  # pillow-heif (the dev extra installs it) registered with Pillow
    photo = Image.open(ASTRONAUT).convert("RGB")
    d = tmp_path / "phone"
    d.mkdir()
    photo.save(d / "IMG_0001.HEIC", "HEIF")
    photo.save(d / "download.jfif", "JPEG")
    photo.save(d / "web.avif", "AVIF")
    code, out, err = run_cli(["predict", d, "--model", checkpoint, "--jsonl"], capsys)
    assert code == 0, err
    results = {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}
    assert sorted(results) == ["IMG_0001.HEIC", "download.jfif", "web.avif"]
    for name, result in results.items():
        assert len(result["faces"]) == 1 and result["faces"][0]["label"], name


def test_camcorder_video_is_read_and_other_files_are_counted(checkpoint, clip, tmp_path, capsys):
    """A folder from a camera: the .MTS video is analysed (it was skipped unsaid), and the
    files that are neither images nor videos are counted once by kind, hidden ones aside."""
    d = tmp_path / "card"
    d.mkdir()
    (d / "00001.MTS").write_bytes(clip.read_bytes())  # FFmpeg reads the container, not the name
    (d / "IMG_0002.dng").write_bytes(b"raw")
    (d / "IMG_0003.DNG").write_bytes(b"raw")
    (d / "notes.txt").write_text("shot list")
    (d / ".DS_Store").write_bytes(b"")
    code, out, err = run_cli(["predict", d, "--model", checkpoint, "--no-progress"], capsys)
    assert code == 0, err
    assert "00001.MTS: 20 frames" in out
    assert "card: 3 other file(s) skipped (.dng, .txt): not image or video types" in err


def test_heic_without_pillow_heif_says_what_to_install(tmp_path):
    """Where the extra is not installed, a HEIC photo says so and how to get it (a fresh
    process: pillow-heif, once registered, stays registered); in a folder of them, the first
    says it and the rest are counted in one line, not a line each with the same hint."""
    import subprocess
    import sys

    assert heif_support()
    photo = Image.open(ASTRONAUT).convert("RGB")
    for i in range(1, 6):
        photo.save(tmp_path / f"IMG_000{i}.heic", "HEIF")
    photo.save(tmp_path / "web.png")
    blocked = (
        "import sys; sys.modules['pillow_heif'] = None; from ferkit.cli import main; "
        f"sys.exit(main(['predict', {str(tmp_path)!r}, '--no-progress']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    first, rest = done.stderr.splitlines()
    assert first.startswith(f"ferkit predict: error: {tmp_path / 'IMG_0001.heic'}: a HEIC/HEIF")
    assert "pip install 'ferkit[heic]'" in first
    assert rest == (
        "ferkit predict: error: 4 more HEIC/HEIF photo(s) not read, for the same reason: "
        f"{tmp_path / 'IMG_0002.heic'}, {tmp_path / 'IMG_0003.heic'}, "
        f"{tmp_path / 'IMG_0004.heic'} and 1 more"
    )
    assert "1 image, 1 face, 0 without a face; 5 not read (see above)" in done.stdout


def test_an_unreadable_video_is_one_line_without_ffmpegs_own(tmp_path):
    """FFmpeg prints "moov atom not found" to the process's stderr; ferkit's own line says it.
    In a fresh process: OpenCV reads FFmpeg's log level once, at its first capture."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    command = [sys.executable, "-m", "ferkit", "predict", str(bad), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"ferkit predict: error: {bad}: cannot open it as a video (unknown format or corrupt file)"
    ]


def test_video_annotated_and_timeline(checkpoint, clip, tmp_path, capsys):
    out_mp4, timeline = tmp_path / "out.mp4", tmp_path / "timeline.csv"
    code, out, _ = run_cli(
        [
            "predict",
            clip,
            "--model",
            checkpoint,
            "--annotate",
            out_mp4,
            "--csv",
            timeline,
            "--every",
            "2",
            "--smooth",
            "0.5",
        ],
        capsys,
    )
    assert code == 0 and "20 frames (10 analysed)" in out
    assert "1 person," in out and "\n  person 0: " in out  # one line per tracked person
    cap = cv2.VideoCapture(str(out_mp4))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 20 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 320
    rows = list(csv.DictReader(timeline.open()))
    assert [int(r["frame"]) for r in rows] == list(range(0, 20, 2))  # one face per analysed frame
    assert [float(r["time_s"]) for r in rows[:3]] == [0.0, 0.2, 0.4]
    assert len({r["face"] for r in rows}) == 1  # tracked as one face throughout
    xs = [int(r["x"]) for r in rows]
    assert xs == sorted(xs) and xs[-1] > xs[0]  # the box follows the face to the right


def test_video_emotion_timeline_plot(checkpoint, clip, tmp_path, capsys):
    """`--timeline FILE` draws each person's probabilities over time; with --json its wrote
    line goes to stderr; one video only, a suffix matplotlib writes, never over a file."""
    plot = tmp_path / "people.png"
    code, out, err = run_cli(
        ["predict", clip, "--model", checkpoint, "--timeline", plot, "--json"], capsys
    )
    assert code == 0 and json.loads(out) and f"wrote {plot}" in err
    assert Image.open(plot).width >= 600
    for inputs, target, message in (
        ([clip], plot, "already exists"),
        ([clip, ASTRONAUT], tmp_path / "y.png", "plots one video; give exactly one"),
        ([clip], tmp_path / "x.mp3", "cannot write a plot as .mp3"),
    ):
        args = ["predict", *inputs, "--model", checkpoint, "--timeline", target]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and message in err, err


def test_timeline_figure_panels_per_person():
    import pandas as pd

    from ferkit.evaluation.plots import emotion_timeline
    from ferkit.labels import EMOTIONS

    p = dict.fromkeys(EMOTIONS, 0.0)
    rows = [
        {"time_s": t / 10, "track": k, "label": "happy", **p, "happy": 1.0}
        for t in range(5)
        for k in (0, 1, 2)
    ]
    fig = emotion_timeline(pd.DataFrame(rows), list(EMOTIONS), most_people=2)
    assert len(fig.axes) == 2 and "1 more not shown" in fig.get_suptitle()
    assert fig.axes[0].get_title() == "person 0: mostly happy (5 frames)"
    empty = emotion_timeline(pd.DataFrame(rows).iloc[:0], list(EMOTIONS))
    assert "no face tracked" in empty.axes[0].texts[0].get_text()


def test_video_batched_matches_frame_by_frame(checkpoint, clip):
    rec = EmotionRecognizer(checkpoint)
    batched = [r for r in analyse_video(rec, clip, batch_frames=8)]
    single = [r for r in analyse_video(rec, clip, batch_frames=1)]
    assert len(batched) == len(single) == 20
    for a, b in zip(batched, single, strict=True):
        assert [f.box for f in a.faces] == [f.box for f in b.faces]
        for fa, fb in zip(a.faces, b.faces, strict=True):
            np.testing.assert_allclose(
                list(fa.scores.values()), list(fb.scores.values()), atol=1e-5
            )


def test_video_json_and_summary(checkpoint, clip, tmp_path, capsys):
    code, out, _ = run_cli(["predict", clip, "--model", checkpoint, "--json"], capsys)
    (doc,) = json.loads(out)
    assert code == 0 and len(doc["frames"]) == 20 and doc["frames"][1]["time_s"] == 0.1
    summary = process_video(EmotionRecognizer(checkpoint), clip, every=5)
    assert (summary.frames, summary.analysed) == (20, 4)


def test_interrupted_video_keeps_the_frames_so_far(checkpoint, clip, tmp_path, caplog):
    """Ctrl-C midway through a video keeps the annotated frames and CSV rows so far as
    NAME.partial.mp4/.csv, a playable video, and says so; the outputs' names stay free."""
    seen = []

    def interrupt_at_frame_8(result):
        seen.append(result)
        if len(seen) == 8:
            raise KeyboardInterrupt

    out_mp4, out_csv = tmp_path / "out.mp4", tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        process_video(EmotionRecognizer(checkpoint), clip, annotate_to=out_mp4, csv_to=out_csv,
                      every=2, on_frame=interrupt_at_frame_8)  # fmt: skip
    assert not out_mp4.exists() and not out_csv.exists()
    video, table = tmp_path / "out.partial.mp4", tmp_path / "out.partial.csv"
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8 and cap.read()[0]
    cap.release()
    assert {r["frame"] for r in csv.DictReader(table.open())} == {"0", "2", "4", "6"}
    assert f"wrote {video}" in caplog.text and f"wrote {table}" in caplog.text


def test_a_video_not_written_whole_never_replaces_the_old_one(
    checkpoint, clip, tmp_path, monkeypatch, capsys
):
    """OpenCV's writer drops frames it cannot write (a full disk) with a warning per frame and
    no error: a truncated video replaced the user's file and predict said "wrote" (exit 0).
    The written video is read back; one short of frames is refused and the old file stays."""
    import ferkit.inference.video as video

    real_writer = video._writer

    class DropsFramesAfterFive:  # as a writer on a full disk does
        def __init__(self, *args, **kwargs):
            self.writer, self.n = real_writer(*args, **kwargs), 0

        def write(self, frame):
            self.n += 1
            if self.n <= 5:
                self.writer.write(frame)

        def release(self):
            self.writer.release()

    out = tmp_path / "out.mp4"
    out.write_text("the user's earlier video")
    monkeypatch.setattr(video, "_writer", DropsFramesAfterFive)
    argv = ["predict", clip, "--model", checkpoint, "--annotate", out, "--overwrite"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2 and "wrote" not in stdout
    assert f"{out}: the annotated video was not written whole (5 of 20 frames readable" in err
    assert out.read_text() == "the user's earlier video"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_file_names_that_are_no_utf8_still_get_their_rows(checkpoint, tmp_path, capsys):
    """A photo named in Latin-1 bytes (an old file system, a zip archive) stopped `predict
    --csv` and `data crop` with an internal UnicodeEncodeError, their tables unwritten. The
    rows are written, the name with backslash escapes, in a CSV any UTF-8 reader opens."""
    import os

    photos = tmp_path / "photos"
    photos.mkdir()
    latin1 = os.fsdecode(b"caf\xe9.png")  # no UTF-8: Python holds it as a surrogate
    (photos / latin1).write_bytes(ASTRONAUT.read_bytes())
    (photos / "smile😀.png").write_bytes(ASTRONAUT.read_bytes())
    table = tmp_path / "faces.csv"
    code, _, err = run_cli(["predict", photos, "--model", checkpoint, "--csv", table], capsys)
    assert code == 0, err
    with open(table, newline="", encoding="utf-8") as f:
        names = sorted(Path(r["file"]).name for r in csv.DictReader(f))
    assert names == ["caf\\udce9.png", "smile😀.png"]
    assert main(["data", "crop", str(photos), str(tmp_path / "crops")]) == 0
    log = (tmp_path / "crops" / "crops.csv").read_text(encoding="utf-8")
    assert "caf\\udce9.png,ok" in log


def test_csv_dash_prints_the_rows_alone_on_stdout(checkpoint, clip, tmp_path, monkeypatch, capsys):
    """`--csv -` wrote a file named "-"; it now prints the rows, images' and a video's, as
    the only thing on stdout (pipes into csvkit, pandas), and what people read on stderr.
    Pictures cannot go to stdout: `--annotate -` made a folder named "-"."""
    monkeypatch.chdir(tmp_path)
    argv = ["predict", ASTRONAUT, clip, "--model", checkpoint, "--every", "10", "--csv", "-"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0 and not (tmp_path / "-").exists()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {Path(r["file"]).name for r in rows} == {"astronaut.png", "clip.mp4"}
    assert "1 image, 1 face" in err and "wrote" not in out + err
    code, _, err = run_cli([*argv, "--jsonl"], capsys)
    assert code == 2 and "--csv - and --json/--jsonl both print on stdout" in err
    for flag in ("--annotate", "--timeline"):
        code, _, err = run_cli(["predict", clip, "--model", checkpoint, flag, "-"], capsys)
        assert code == 2 and f"{flag} -: '-' names standard output" in err
    assert not (tmp_path / "-").exists()


def test_annotate_file_needs_one_video(checkpoint, clip, capsys):
    code, _, err = run_cli(
        ["predict", clip, ASTRONAUT, "--model", checkpoint, "--annotate", "x.mp4"], capsys
    )
    assert code == 2 and "one video" in err


def test_annotate_one_image_to_a_file(checkpoint, clip, tmp_path, capsys):
    """`--annotate out.jpg` for one photo writes that file (as `--annotate out.mp4` does for
    one video); with two inputs, or a video, it is refused before any work."""
    out = tmp_path / "annotated.jpg"
    code, stdout, _ = run_cli(
        ["predict", ASTRONAUT, "--model", checkpoint, "--annotate", out], capsys
    )
    assert code == 0 and f"wrote {out}" in stdout
    assert Image.open(out).format == "JPEG" and Image.open(out).size == (512, 512)
    for inputs in ([ASTRONAUT, ASTRONAUT.parent], [clip]):
        other = tmp_path / "other.png"
        code, stdout, err = run_cli(
            ["predict", *inputs, "--model", checkpoint, "--annotate", other], capsys
        )
        assert code == 2 and "names one image file" in err and "face" not in stdout
        assert not other.exists()


def test_missing_model_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["predict", ASTRONAUT, "--model", tmp_path / "nope.pt"], capsys)
    assert code == 2 and "nope.pt" in err and len(err.strip().splitlines()) == 1


def test_webcam_without_gui_says_why(checkpoint, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, _, err = run_cli(["webcam", "--view", "window", "--model", checkpoint], capsys)
    assert code == 2 and ("no GUI" in err or "no display" in err)  # (auto: the browser)


@pytest.fixture
def fake_gui(monkeypatch):
    """A window for `ferkit webcam` where there is none: frames shown are kept, keys scripted."""
    from ferkit.cli import webcam

    gui = SimpleNamespace(shown=[], keys=iter(()))
    monkeypatch.setattr(webcam, "gui_problem", lambda: None)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: gui.shown.append((name, img.copy())))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(gui.keys, -1))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    return gui


def test_webcam_loop_shows_annotated_frames_until_q(checkpoint, clip, capsys, fake_gui):
    """The live loop on a real stream (a video file stands in for the camera)."""
    from ferkit.cli import webcam

    fake_gui.keys = iter([-1, -1, -1, ord("q")])
    code, _, err = run_cli(["webcam", "--camera", clip, "--model", checkpoint], capsys)
    assert code == 0, err
    shown = fake_gui.shown
    assert len(shown) == 4 and shown[0][0] == webcam.WINDOW
    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(4)]
    assert shown[0][1].shape == frames[0].shape
    # A box and label are drawn once the face's track is confirmed (at the latest, its 3rd frame)
    assert np.abs(shown[3][1].astype(int) - frames[3]).sum() > 0


def test_webcam_stream_that_ends_says_so(checkpoint, clip, capsys, fake_gui):
    code, _, err = run_cli(["webcam", "--camera", clip, "--model", checkpoint], capsys)
    assert code == 2 and "stopped sending frames" in err


def test_webcam_that_cannot_open_says_which(checkpoint, tmp_path, capsys, fake_gui):
    code, _, err = run_cli(
        ["webcam", "--camera", tmp_path / "none.mp4", "--model", checkpoint], capsys
    )
    assert code == 2 and "none.mp4" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--every", "0"], "--every 0: analyse every Nth frame, N >= 1"),
        (["--smooth", "1.5"], "--smooth 1.5: the weight of the past, in [0, 1)"),
    ],
)
def test_video_options_out_of_range_name_the_flag(flags, message, capsys):
    assert main(["predict", str(ASTRONAUT), *flags]) == 2
    assert message in capsys.readouterr().err
