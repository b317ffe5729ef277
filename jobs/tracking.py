"""Track ids for the machine boxes of a video's frames: ultralytics' ByteTrack fed with our own detections.

The auto-annotation worker predicts frames with its own batched loop (jobs/annotate.py); this module does not
predict. It takes each frame's detections (xyxy, confidence, class), in frame order, and gives every detection
the id of the track it belongs to, using ``ultralytics.trackers.byte_tracker.BYTETracker`` with the settings of
``ultralytics/cfg/trackers/bytetrack.yaml`` (any of its keys can be overridden). ``model.track()`` is never
called, and neither ultralytics nor ``lap`` is imported until a tracker is made.

Conventions (read this before using the ids):

* ``NO_ID`` (-1) marks a detection without a track id. Ids are positive (1, 2, ...), per tracker: each
  ``FrameTracker`` (one video) counts from 1 again, and so does ``reset()``. A detection gets ``NO_ID`` when
  its score is at or below ``track_low_thresh``; when its box has no area; when its score is under
  ``track_high_thresh`` and it matches no existing track (ByteTrack's second stage only extends tracks with
  low-score boxes, it never starts one from them, so a lone low-confidence false positive has no id); when its
  score is under ``new_track_thresh`` and it matches nothing; and on the first frame of a new track (below).
* New tracks. On the tracker's first frame every detection scoring at least ``new_track_thresh`` starts a
  confirmed track and has its id at once. Later, a detection that matches no track starts an *unconfirmed*
  track: ultralytics does not report it (its id is ``NO_ID`` in that frame's answer), and the track is
  confirmed only if a detection of the *very next* frame overlaps it (IoU x score > 0.3 with ``fuse_score``,
  IoU > 0.3 without; IoU with the box as first seen: an unconfirmed track has no velocity yet); otherwise it is
  dropped and its id is never used (ids may skip numbers). The tracker's first frame is the first
  ``update()``, even one without detections. So an object that appears mid-video has its id from its second
  frame in ``update()``'s answers, and ``FrameTracker.backfill`` then names the detection of its first frame
  (frame index, row, id), so that it can be given the id too. ``assign_tracks`` does that for a whole
  sequence: every object confirmed by ByteTrack has its id from the frame it appears in.
* Classes are ignored when matching (ByteTrack is class-agnostic, as in ``model.track()``): a box whose class
  flickers between frames keeps its track.
* Sampled frames (every k-th frame of a video). Pass ``frame_rate`` = the rate of the frames you feed (video
  fps / k). It only sets how many fed frames a lost track (an object not detected, e.g. occluded) is kept
  before its id is given up: ``track_buffer`` counts frames at 30 fps, so the tracker keeps a lost track for
  ``int(frame_rate / 30 * track_buffer)`` fed frames (at least 1), i.e. ``track_buffer / 30`` seconds of video
  whatever the sampling. That is what BYTETracker's ``frame_rate`` argument did in earlier ultralytics
  releases; the 8.4 one has no such argument and keeps lost tracks ``track_buffer`` frames at any rate.
  It does not change matching: matching is by box overlap with each track's predicted box (a Kalman filter
  with constant velocity, so steady motion is followed once a track is confirmed), and a new track is
  confirmed only if its boxes in two consecutive fed frames overlap (see above). An object that moves about
  its own size or more between fed frames gets no (or a new) id each frame: keep frames closer together for
  fast objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

NO_ID = -1
"""The track id of a detection that belongs to no confirmed track."""

LAP_MISSING = "tracking needs the 'lap' package: pip install 'lap>=0.5.12'"
REFERENCE_FRAME_RATE = 30.0  # bytetrack.yaml's track_buffer is in frames at this rate


def require_lap() -> None:
    """Raise a clear RuntimeError when ``lap`` (ByteTrack's assignment solver) is missing: ultralytics would
    try to pip-install it at import time, which fails offline and mid-job."""
    try:
        import lap  # noqa: F401

        assert lap.__version__  # a stray folder named lap is not the package (ultralytics checks the same)
    except (ImportError, AssertionError, AttributeError):
        raise RuntimeError(LAP_MISSING) from None


def bytetrack_config(**overrides) -> Any:
    """ultralytics' bytetrack.yaml with ``overrides`` applied, as the namespace BYTETracker takes.
    An unknown key or ``tracker_type`` other than bytetrack raises ValueError."""
    import ultralytics
    import yaml
    from ultralytics.utils import IterableSimpleNamespace

    path = Path(ultralytics.__file__).resolve().parent / "cfg" / "trackers" / "bytetrack.yaml"
    cfg = yaml.safe_load(path.read_text())
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown ByteTrack setting(s) {', '.join(unknown)}; known: {', '.join(sorted(cfg))}")
    cfg.update(overrides)
    if cfg.get("tracker_type") != "bytetrack":
        raise ValueError(f"FrameTracker runs ByteTrack, not {cfg.get('tracker_type')!r}")
    return IterableSimpleNamespace(**cfg)


class _Detections:
    """The part of ultralytics' Boxes that BYTETracker reads: conf, cls, xyxy, xywh, len() and boolean indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray):
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> "_Detections":
        return _Detections(self.xyxy[index], self.conf[index], self.cls[index])


def _as_detections(xyxy, conf, cls) -> _Detections:
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    conf = np.asarray(conf, dtype=np.float32).reshape(-1)
    cls = np.asarray(cls).reshape(-1)
    if not (len(xyxy) == len(conf) == len(cls)):
        raise ValueError(f"xyxy, conf and cls differ in length: {len(xyxy)}, {len(conf)}, {len(cls)}")
    finite = np.isfinite(xyxy).all(axis=1) & np.isfinite(conf)
    if not finite.all():  # a NaN box would poison the Kalman filter: make it a no-area box, which is skipped
        xyxy, conf = xyxy.copy(), conf.copy()
        xyxy[~finite], conf[~finite] = 0.0, 0.0
    return _Detections(xyxy, conf, cls.astype(np.float32))


class FrameTracker:
    """ByteTrack over one video's frames, in frame order.

    ``update()`` once per frame (with that frame's detections, possibly none), in order; ``reset()`` before
    another video (or make a new tracker). See the module's docstring for the id conventions.

    ``frame_rate``: the rate of the frames fed (video fps / k when every k-th frame is kept); it scales how long
    a lost track is kept (``track_buffer`` is in frames at 30 fps). ``overrides``: bytetrack.yaml keys
    (track_high_thresh, track_low_thresh, new_track_thresh, track_buffer, match_thresh, fuse_score).

    After each ``update()``, ``backfill`` lists ``(frame_index, row, track_id)`` for detections of earlier
    frames (their ``update()`` said ``NO_ID``: the first frame of a then-unconfirmed track) whose track this
    frame confirmed; ``frame_index`` counts ``update()`` calls from 0.
    """

    def __init__(self, frame_rate: float = 30.0, **overrides):
        require_lap()  # before ultralytics.trackers: importing it without lap pip-installs lap
        from ultralytics.trackers.byte_tracker import BYTETracker

        frame_rate = float(frame_rate)
        if not np.isfinite(frame_rate) or frame_rate <= 0:
            raise ValueError(f"frame_rate must be a positive number of frames per second, got {frame_rate!r}")
        self.args = bytetrack_config(**overrides)
        self.frame_rate = frame_rate
        self.max_frames_lost = max(1, int(frame_rate / REFERENCE_FRAME_RATE * int(self.args.track_buffer)))
        self._tracker = BYTETracker(self.args)
        self._tracker.max_frames_lost = self.max_frames_lost
        self.frame_index = -1  # of the last update()
        self.backfill: list[tuple[int, int, int]] = []
        self._births: dict[int, tuple[int, int]] = {}  # unconfirmed track id -> (frame_index, row) it started at

    def update(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray,
               image: np.ndarray | None = None) -> np.ndarray:
        """Track ids (int64, aligned with the input rows) for this frame's detections; ``NO_ID`` (-1) for a
        detection in no confirmed track. ``xyxy``: (N, 4) pixel corners; ``conf``: (N,); ``cls``: (N,);
        ``image``: the frame (BGR), optional (ByteTrack does not use it)."""
        dets = _as_detections(xyxy, conf, cls)
        self.frame_index += 1
        rows = self._tracker.update(dets, image)
        ids = np.full(len(dets), NO_ID, dtype=np.int64)
        for row in np.asarray(rows, dtype=np.float64).reshape(-1, 8):
            i, track_id = int(row[7]), int(row[4])
            if 0 <= i < len(ids) and ids[i] == NO_ID:
                ids[i] = track_id
        reported = set(ids[ids != NO_ID].tolist())
        self.backfill = [(*self._births.pop(t), t) for t in sorted(reported & set(self._births))]
        unconfirmed = [t for t in self._tracker.tracked_stracks if not t.is_activated]
        alive = {int(t.track_id) for t in unconfirmed}
        self._births = {t: where for t, where in self._births.items() if t in alive}  # the rest were dropped
        for track in unconfirmed:
            if track.start_frame == self._tracker.frame_id:  # started by this frame's detection ``track.idx``
                self._births[int(track.track_id)] = (self.frame_index, int(track.idx))
        return ids

    def reset(self) -> None:
        """Forget every track (a new video): the next frame is a first frame, and ids count from 1 again."""
        self._tracker.reset()
        self._tracker.max_frames_lost = self.max_frames_lost
        self.frame_index = -1
        self.backfill = []
        self._births = {}


def assign_tracks(frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] | Iterable,
                  frame_rate: float = 30.0, **overrides) -> list[np.ndarray]:
    """Track ids for a whole sequence: ``frames`` holds each frame's ``(xyxy, conf, cls)`` in order; returns one
    int64 array per frame, aligned with its rows, ``NO_ID`` (-1) where there is none. Unlike ``update()``'s
    answers, a track's first detection has the track's id too (``FrameTracker.backfill``)."""
    tracker = FrameTracker(frame_rate, **overrides)
    out: list[np.ndarray] = []
    for xyxy, conf, cls in frames:
        out.append(tracker.update(xyxy, conf, cls))
        for frame_index, row, track_id in tracker.backfill:
            out[frame_index][row] = track_id
    return out
