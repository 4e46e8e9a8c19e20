"""Tracking faces through a video: ids that stay, smoothing per person, blips never labelled,
the per-frame table and the per-person summary."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT
from ferkit.inference import EmotionRecognizer, Face
from ferkit.inference.tracking import Tracker, follow
from ferkit.inference.video import process_video

FRAMES = 20
BLIP_FRAME = 5  # the one frame with a spurious "face"
BLIP = (250, 180, 40, 40)


def face(x, happy=0.9, score=None, y=0):
    scores = {"happy": happy, "sad": 1 - happy}
    label = max(scores, key=scores.get)
    f = Face((x, y, 100, 100), label, scores, scores[label])
    return f if score is None else _with_score(f, score)


def _with_score(f: Face, score: float) -> Face:
    from dataclasses import replace

    return replace(f, score=score)


def test_ids_follow_faces_and_scores_are_smoothed():
    t = Tracker(smooth=0.5, min_hits=1)
    a, b = t.update([face(0, 0.9), face(300, 0.1)])
    swapped = t.update([face(305, 0.9), face(5, 0.1)])  # same people, listed the other way
    assert [f.track for f in swapped] == [b.track, a.track]
    assert swapped[1].scores["happy"] == pytest.approx(0.5)  # 0.5 * 0.9 + 0.5 * 0.1
    assert sum(swapped[0].scores.values()) == pytest.approx(1.0)


def test_a_detection_seen_once_gets_no_label_live():
    t = Tracker()  # min_hits 3
    assert t.update([face(0)]) == [] and t.update([face(2)]) == []
    assert [f.track for f in t.update([face(4)])] == [0]  # confirmed by its third frame
    (same,) = t.update([face(6), face(400)])  # a new face elsewhere: not yet
    assert same.track == 0 and same.box[0] == 6
    sure = Tracker()  # a detector sure of a face (YuNet's scores) confirms it at once
    assert [f.track for f in sure.update([face(0, score=0.95)])] == [0]
    assert sure.update([face(300, score=0.6)]) == []


def test_follow_labels_a_real_face_from_its_first_frame_and_never_a_blip():
    frames = [[face(3 * i)] + ([face(500, 0.2)] if i == BLIP_FRAME else []) for i in range(10)]
    out = list(follow(Tracker(), [(i, faces) for i, faces in enumerate(frames)]))
    assert [i for i, _ in out] == list(range(10))
    assert all(len(faces) == 1 and faces[0].track == 0 for _, faces in out)
    # without confirmation (the old behaviour) the blip is labelled
    loose = list(follow(Tracker(min_hits=1), [(i, faces) for i, faces in enumerate(frames)]))
    assert len(loose[BLIP_FRAME][1]) == 2


def test_frames_not_analysed_carry_the_last_faces():
    items = [(0, [face(0)]), (1, None), (2, [face(2)]), (3, None), (4, [face(4)])]
    out = list(follow(Tracker(), items))
    assert [len(faces) for _, faces in out] == [1, 1, 1, 1, 1]
    assert out[1][1][0].box == out[0][1][0].box


# -- a synthetic clip with a detector that knows where things are -------------------------


class PasteFinder:
    """Finds the pasted astronaut by template matching, and the green square (a blip) by colour."""

    color = True
    thread_safe = False

    def __init__(self, template: np.ndarray) -> None:
        self.template = template

    def detect(self, image):
        res = cv2.matchTemplate(image, self.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, y) = cv2.minMaxLoc(res)
        h, w = self.template.shape[:2]
        boxes = [(x, y, w, h)] if best > 0.5 else []
        green = (image[:, :, 1] > 180) & (image[:, :, 2] < 90) & (image[:, :, 0] < 90)
        if green.sum() > 200:
            ys, xs = np.nonzero(green)
            boxes.append((xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
        return boxes


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """20 frames at 10 fps: the astronaut's face sliding right, a green square in frame 5."""
    face_img = cv2.resize(cv2.imread(str(ASTRONAUT))[40:200, 150:310], (100, 100))
    path = tmp_path_factory.mktemp("track") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    for i in range(FRAMES):
        frame = np.full((240, 320, 3), 100, np.uint8)
        frame[50:150, 10 + 6 * i : 110 + 6 * i] = face_img
        if i == BLIP_FRAME:
            x, y, w, h = BLIP
            frame[y : y + h, x : x + w] = (0, 255, 0)
        writer.write(frame)
    writer.release()
    return path, face_img


def test_video_one_stable_id_and_no_label_for_the_blip(checkpoint, synthetic, tmp_path):
    path, template = synthetic
    rec = EmotionRecognizer(checkpoint, detector=PasteFinder(template))
    assert len(rec.predict(cv2.VideoCapture(str(path)).read()[1])) == 1
    timeline = tmp_path / "t.csv"
    analysis = process_video(rec, path, csv_to=timeline, annotate_to=tmp_path / "a.avi")
    rows = list(csv.DictReader(timeline.open()))
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))  # one row per frame
    assert {r["track"] for r in rows} == {"0"}
    xs = [int(r["x"]) for r in rows]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 100
    # the detector did report the blip: without confirmation it would be a second row
    loose = process_video(rec, path, tracker=Tracker(min_hits=1))
    assert len(loose.rows()) == FRAMES + 1
    py_rows = analysis.rows()  # the table in Python is the file's
    assert [(r["frame"], r["track"], r["x"]) for r in py_rows] == [
        (int(r["frame"]), int(r["track"]), int(r["x"])) for r in rows
    ]
    df = analysis.to_pandas()
    assert len(df) == FRAMES and list(df["frame"]) == list(range(FRAMES))
    assert df["time_s"].iloc[1] == pytest.approx(0.1)
    (person,) = analysis.people()
    assert person.track == 0 and person.frames == FRAMES
    assert sum(person.shares.values()) == pytest.approx(1.0)
    assert person.dominant == max(person.shares, key=person.shares.get)
    assert person.text().startswith(f"person 0: {person.dominant} ")
    assert f"{FRAMES} frames, 0.0-1.9 s" in person.text()


def test_predict_video_is_the_same_call(checkpoint, synthetic):
    path, template = synthetic
    rec = EmotionRecognizer(checkpoint, detector=PasteFinder(template))
    a = rec.predict_video(path, every=2)
    assert (a.frames, a.analysed, a.faces) == (FRAMES, FRAMES // 2, FRAMES // 2)
    assert [r["frame"] for r in a.rows()] == list(range(0, FRAMES, 2))
