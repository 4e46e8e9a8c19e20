"""YuNet on ONNX Runtime finds what cv2.FaceDetectorYN finds, with the same file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT
from ferkit.detection import YuNetDetector
from ferkit.detection.detectors import YUNET_MODEL
from ferkit.detection.yunet_onnx import YuNetSession
from ferkit.errors import ConfigError


def scenes() -> dict[str, np.ndarray]:
    """Sizes that are and are not multiples of 32, one face and several, and none."""
    photo = cv2.imread(str(ASTRONAUT))
    face = photo[40:200, 150:310]
    crowd = np.full((400, 650, 3), 110, np.uint8)  # 650: padded to 672 for the network
    crowd[60:220, 40:200] = face
    crowd[100:180, 400:480] = cv2.resize(face, (80, 80), interpolation=cv2.INTER_AREA)
    crowd[300:340, 560:600] = cv2.resize(face, (40, 40), interpolation=cv2.INTER_AREA)
    return {
        "astronaut 512": photo,
        "astronaut 256": cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA),
        "astronaut 301x203": cv2.resize(photo, (301, 203), interpolation=cv2.INTER_AREA),
        "three faces": crowd,
        "no face": np.full((120, 200, 3), 90, np.uint8),
    }


@pytest.mark.parametrize("score_threshold", [0.5, 0.05])  # 0.05: many overlapping candidates
def test_onnxruntime_rows_equal_opencv_rows(score_threshold):
    session = YuNetSession(YUNET_MODEL)
    for name, image in scenes().items():
        h, w = image.shape[:2]
        net = cv2.FaceDetectorYN.create(str(YUNET_MODEL), "", (w, h), score_threshold, 0.3, 5000)
        _, expected = net.detect(image)
        expected = np.zeros((0, 15), np.float32) if expected is None else expected
        got = session.detect(image, score_threshold, 0.3)
        assert got.dtype == np.float32 and got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, atol=2e-3, err_msg=name)
    assert len(session.detect(scenes()["three faces"], 0.5, 0.3)) == 3


def test_both_runtimes_give_the_detector_the_same_faces():
    ort, cv = YuNetDetector(), YuNetDetector(runtime="opencv")
    assert ort.runtime == "onnxruntime"
    for name, image in scenes().items():
        a, b = ort.detect(image), cv.detect(image)
        assert [d.box for d in a] == [d.box for d in b], name
        np.testing.assert_allclose(
            [d.score for d in a] or [0.0], [d.score for d in b] or [0.0], atol=1e-4
        )


def test_bad_runtime_or_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Valid: onnxruntime, opencv"):
        YuNetDetector(runtime="tensorflow")
    junk = tmp_path / "yunet.onnx"
    junk.write_bytes(b"not a model")
    for runtime in ("onnxruntime", "opencv"):
        with pytest.raises(ConfigError, match=f"not a YuNet model {runtime} can load"):
            YuNetDetector(junk, runtime=runtime)
