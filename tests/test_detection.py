"""The detection layer: YuNet shipped with scores and landmarks, Haar by name, merged
overlaps, the face options (Python, CLI, server) and the registry the CLI reads."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import ASTRONAUT
from ferkit.cli import main
from ferkit.cli.recognizer_options import add_detector_options
from ferkit.detection import (
    DEFAULT_DETECTOR,
    DETECTORS,
    LANDMARKS,
    Detection,
    FaceFilter,
    FixedBoxes,
    HaarDetector,
    YuNetDetector,
    find_faces,
    load_frame,
    make_detector,
    merge_overlaps,
)
from ferkit.errors import ConfigError
from ferkit.inference import EmotionRecognizer
from ferkit.inference.tracking import iou
from ferkit.serve import create_app


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT))  # BGR


@pytest.fixture(scope="module")
def two_faces(photo) -> np.ndarray:
    """The astronaut's face twice on a gray canvas: 160 and 80 pixels wide."""
    canvas = np.full((400, 640, 3), 110, np.uint8)
    face = photo[40:200, 150:310]
    canvas[60:220, 40:200] = face
    canvas[100:180, 400:480] = cv2.resize(face, (80, 80), interpolation=cv2.INTER_AREA)
    return canvas


def inside(point, box) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_shipped_yunet_finds_one_face_with_its_landmarks_inside(photo):
    (d,) = find_faces(YuNetDetector(), load_frame(photo))
    assert 0.7 <= d.score <= 1.0
    assert len(d.landmarks) == len(LANDMARKS) == 5
    assert all(inside(p, d.box) for p in d.landmarks)
    right_eye, left_eye, nose, mouth_right, mouth_left = d.landmarks
    assert right_eye[0] < left_eye[0] and mouth_right[0] < mouth_left[0]  # her right: our left
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_yunet_is_the_default_and_haar_works_by_name(checkpoint):
    rec = EmotionRecognizer(checkpoint)
    assert DEFAULT_DETECTOR == "yunet" and isinstance(rec.detector, YuNetDetector)
    (face,) = rec.predict(ASTRONAUT)
    d = face.to_dict()
    assert face.score > 0.7 and list(d["landmarks"]) == list(LANDMARKS)
    assert all(inside(p, d["box"]) for p in d["landmarks"].values())
    json.dumps(d)  # plain JSON
    haar = EmotionRecognizer(checkpoint, detector="haar")
    assert isinstance(haar.detector, HaarDetector)
    (hface,) = haar.predict(ASTRONAUT)
    assert hface.score is None and hface.landmarks is None
    assert hface.to_dict()["score"] is None and hface.to_dict()["landmarks"] is None
    assert iou(hface.box, face.box) > 0.5


def test_landmarks_in_input_pixels_for_shrunk_images(checkpoint, photo):
    rec = EmotionRecognizer(checkpoint, max_side=512)
    (small,) = rec.predict(photo)
    (big,) = rec.predict(cv2.resize(photo, (2048, 2048), interpolation=cv2.INTER_LINEAR))
    for (bx, by), (sx, sy) in zip(big.landmarks, small.landmarks, strict=True):
        assert abs(bx - 4 * sx) < 12 and abs(by - 4 * sy) < 12


def test_max_faces_and_min_face_size_keep_the_largest(checkpoint, two_faces):
    rec = EmotionRecognizer(checkpoint)
    big, small = rec.predict(two_faces)
    assert big.box[2] > 1.5 * small.box[2]  # largest first
    (only,) = EmotionRecognizer(checkpoint, max_faces=1).predict(two_faces)
    assert only.box == big.box
    between = (big.box[2] + small.box[2]) / 2
    (only,) = EmotionRecognizer(checkpoint, min_face_size=between).predict(two_faces)
    assert only.box == big.box
    (only,) = rec.predict(two_faces, face_filter=FaceFilter(max_faces=1))  # for one call
    assert only.box == big.box and len(rec.predict(two_faces)) == 2


def test_min_face_score_drops_less_sure_faces(checkpoint, two_faces):
    faces = EmotionRecognizer(checkpoint).predict(two_faces)
    scores = sorted(f.score for f in faces)
    assert scores[0] < scores[1]
    between = (scores[0] + scores[1]) / 2
    kept = EmotionRecognizer(checkpoint, min_face_score=between).predict(two_faces)
    assert [f.score for f in kept] == [scores[1]]
    assert len(EmotionRecognizer(checkpoint, min_face_score=1.0).predict(two_faces)) == 0


def test_face_options_refuse_bad_values(checkpoint):
    for bad in ({"min_face_score": 1.5}, {"min_face_size": -1}, {"max_faces": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            EmotionRecognizer(checkpoint, **bad)


def test_overlapping_boxes_are_merged():
    a, b = Detection((100, 100, 50, 50), 0.9), Detection((104, 102, 50, 50), 0.95)
    dets = [a, b, Detection((300, 300, 40, 40), 0.8)]
    assert merge_overlaps(dets) == [dets[1], dets[2]]  # the surer of the two duplicates
    nested = [Detection((10, 10, 80, 80)), Detection((0, 0, 100, 100))]  # no scores
    assert merge_overlaps(nested) == [nested[1]]  # the larger


def test_find_faces_merges_a_detectors_duplicates_but_not_given_boxes(photo):
    class Twice:
        def detect(self, image):  # plain boxes are accepted too
            return [(180, 60, 90, 110), (182, 62, 90, 110), (10, 10, 30, 30)]

    found = find_faces(Twice(), load_frame(photo))
    assert [d.box for d in found] == [(180, 60, 90, 110), (10, 10, 30, 30)]
    given = FixedBoxes([(180, 60, 90, 110), (182, 62, 90, 110)])
    assert len(find_faces(given, load_frame(photo))) == 2


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_registered_detector_builds_and_finds_the_face(name, photo):
    detector = make_detector(name)
    if name == "none":
        assert detector is None
        return
    (d,) = find_faces(detector, load_frame(photo))
    assert iou(d.box, (178, 63, 90, 113)) > 0.5


def test_cli_detector_choices_come_from_the_registry():
    def choices(crops: bool):
        p = argparse.ArgumentParser()
        add_detector_options(p, crops=crops)
        (action,) = [a for a in p._actions if a.dest == "detector"]
        return tuple(action.choices), action.default

    assert choices(True) == (tuple(DETECTORS), DEFAULT_DETECTOR)
    assert choices(False)[0] == tuple(n for n in DETECTORS if n != "none")


def test_cli_face_options(checkpoint, two_faces, tmp_path, capsys):
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), two_faces)

    def faces(*options) -> list:
        code = main(["predict", str(path), "--model", str(checkpoint), "--jsonl", *options])
        out = capsys.readouterr().out
        assert code == 0
        return json.loads(out.splitlines()[0])["faces"]

    assert len(faces()) == 2
    (one,) = faces("--max-faces", "1")
    assert one["score"] > 0.7 and list(one["landmarks"]) == list(LANDMARKS)
    assert len(faces("--min-face-size", "1000")) == 0
    assert len(faces("--detector", "haar", "--max-faces", "1")) == 1
    assert main(["predict", str(path), "--model", str(checkpoint), "--max-faces", "0"]) == 2
    assert "max_faces must be at least 1" in capsys.readouterr().err


def test_server_face_options(checkpoint, two_faces):
    _, png = cv2.imencode(".png", two_faces)
    files = {"file": ("two.png", png.tobytes(), "image/png")}
    with TestClient(create_app(EmotionRecognizer(checkpoint), workers=1)) as client:
        assert len(client.post("/v1/predict", files=files).json()["faces"]) == 2
        r = client.post("/v1/predict?max_faces=1&min_face_score=0.6", files=files)
        (face,) = r.json()["faces"]
        assert face["score"] > 0.6 and list(face["landmarks"]) == list(LANDMARKS)
        for query in ("max_faces=0", "min_face_score=abc", "min_face_size=-3"):
            r = client.post(f"/v1/predict?{query}", files=files)
            assert r.status_code == 422 and r.json()["error"] == "bad_option", query
            assert query.split("=")[0] in r.json()["detail"]


@pytest.mark.parametrize("detector", [YuNetDetector, HaarDetector])
def test_a_detection_size_with_no_room_for_a_face_is_refused(detector):
    with pytest.raises(ConfigError, match="max_side 8: an image shrunk below 12 px"):
        detector(max_side=8)
