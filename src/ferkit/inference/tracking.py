"""Follow faces from frame to frame: one track, one id and one smoothed answer per person.

    tracker = Tracker(smooth=0.6)
    for faces in per_frame_faces:           # each a list of Face from the recognizer
        people = tracker.update(faces)      # live: confirmed faces only, with .track set
    for item, people in follow(Tracker(), items_and_faces):   # a recording: see `follow`
        ...

Faces are matched to the tracks of earlier frames by box overlap (IoU), as one assignment
over all pairs (Hungarian method, scipy), so two people side by side never swap ids for a
greedy reason. A track's probabilities are an exponential moving average over its frames,
which removes most label flicker. A track is labelled only once it is *confirmed*: seen in
`min_hits` analysed frames, or once with a detector score of at least `confirm_score`. A
background blob a detector fires on for a frame or two therefore never gets a label. On a
recording, `follow` looks `min_hits - 1` frames ahead, so a real face is labelled from its
first frame even when confirming it took three.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from ferkit.errors import ConfigError
from ferkit.inference.results import Face

MIN_IOU = 0.3  # overlap needed to call two boxes the same face
MAX_MISSING = 5  # analysed frames a track survives without being seen
MIN_HITS = 3  # analysed frames that confirm a track of low-scoring detections
CONFIRM_SCORE = 0.9  # a detection this sure confirms its track at once (YuNet: real faces ~0.9+)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


T = TypeVar("T")


@dataclass(eq=False)
class Track:
    """One followed face; `id` stays None until the track is confirmed."""

    face: Face  # the last (smoothed) face
    hits: int = 1  # analysed frames it was seen in
    missed: int = 0  # analysed frames since it was last seen
    id: int | None = None  # set when confirmed: 0, 1, 2, ... in order of confirmation


class Tracker:
    """Track faces across frames by IoU, smooth each track's scores, label confirmed ones only.

    Args:
        smooth: weight of the past in the moving average, in [0, 1) (0: no smoothing; 0.7:
            about three frames of memory).
        min_iou: overlap needed to call two boxes the same face.
        max_missing: analysed frames a track survives without being seen (it keeps its id if
            the face comes back within them).
        min_hits: analysed frames that confirm a track (1: every detection is labelled).
        confirm_score: a detector score that confirms a track at once (None: never; faces
            without a score, as from Haar or given boxes, always need `min_hits`).
    """

    def __init__(
        self,
        smooth: float = 0.0,
        *,
        min_iou: float = MIN_IOU,
        max_missing: int = MAX_MISSING,
        min_hits: int = MIN_HITS,
        confirm_score: float | None = CONFIRM_SCORE,
    ) -> None:
        if not 0.0 <= smooth < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1) (got {smooth})")
        if min_hits < 1:
            raise ConfigError(f"min_hits must be at least 1 (got {min_hits})")
        self.smooth, self.min_iou, self.max_missing = smooth, min_iou, max_missing
        self.min_hits, self.confirm_score = min_hits, confirm_score
        self._tracks: list[Track] = []
        self._next_id = 0

    def update(self, faces: Sequence[Face]) -> list[Face]:
        """The faces of the next analysed frame -> its confirmed faces, smoothed, with `track`
        set, in the order given (unconfirmed ones are left out)."""
        return confirmed(self.observe(faces))

    def observe(self, faces: Sequence[Face]) -> list[tuple[Face, Track]]:
        """The faces of the next analysed frame, each smoothed and paired with its track
        (whose `id` is None while it is unconfirmed, and may be set by later frames)."""
        matched = self._match(faces)
        seen: list[tuple[Face, Track]] = []
        for i, face in enumerate(faces):
            track = matched.get(i)
            if track is None:
                track = Track(face)
                self._tracks.append(track)
            else:
                if self.smooth > 0:
                    face = _blend(track.face, face, self.smooth)
                track.face, track.hits, track.missed = face, track.hits + 1, 0
            if track.id is None and self._confirms(track, face):
                track.id, self._next_id = self._next_id, self._next_id + 1
            seen.append((face, track))
        for track in self._tracks:
            if all(track is not t for _, t in seen):
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missing]
        return seen

    def _confirms(self, track: Track, face: Face) -> bool:
        score = getattr(face, "score", None)
        sure = self.confirm_score is not None and score is not None and score >= self.confirm_score
        return sure or track.hits >= self.min_hits

    def _match(self, faces: Sequence[Face]) -> dict[int, Track]:
        """Face index -> live track, maximising total overlap; pairs under min_iou stay apart."""
        if not faces or not self._tracks:
            return {}
        overlap = np.array([[iou(f.box, t.face.box) for t in self._tracks] for f in faces])
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        return {
            int(r): self._tracks[c]
            for r, c in zip(rows, cols, strict=True)
            if overlap[r, c] >= self.min_iou
        }


def confirmed(observed: Iterable[tuple[Face, Track]]) -> list[Face]:
    """The faces whose track is confirmed (now), with `track` set to its id."""
    return [replace(face, track=t.id) for face, t in observed if t.id is not None]


def follow(
    tracker: Tracker, frames: Iterable[tuple[T, Sequence[Face] | None]]
) -> Iterator[tuple[T, list[Face]]]:
    """Track the faces of a recording, deciding each frame with a few frames of hindsight.

    Args:
        tracker: the tracker (its `min_hits - 1` is how many analysed frames it looks ahead).
        frames: (item, faces) in order; faces None for a frame that was not analysed.

    Yields:
        (item, confirmed faces with `track` set), in order. A frame not analysed gets the
        faces of the analysed frame before it. A face is kept if its track is confirmed by
        the time `min_hits - 1` more analysed frames were seen, so a face seen for that long
        is labelled from its first frame and a blip never is, whatever the batching.
    """
    ahead = tracker.min_hits - 1
    queue: deque[tuple[T, list[tuple[Face, Track]] | None]] = deque()
    waiting = 0  # analysed frames in the queue
    last: list[Face] = []
    for item, faces in frames:
        queue.append((item, None if faces is None else tracker.observe(faces)))
        waiting += faces is not None
        while waiting > ahead:
            item0, observed = queue.popleft()
            if observed is not None:
                last, waiting = confirmed(observed), waiting - 1
            yield item0, last
    for item0, observed in queue:
        if observed is not None:
            last = confirmed(observed)
        yield item0, last


def _blend(past: Face, now: Face, alpha: float) -> Face:
    scores = {k: alpha * past.scores.get(k, v) + (1 - alpha) * v for k, v in now.scores.items()}
    label = max(scores, key=scores.__getitem__)
    return replace(now, scores=scores, label=label, confidence=scores[label])
