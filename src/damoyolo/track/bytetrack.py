"""ByteTrack-style multi-object tracker (numpy + a linear-assignment solver).

One call per frame: ``tracker.update(boxes_xyxy, scores, labels)`` -> :class:`Tracks`, the
confirmed tracks that were matched in this frame.  Per frame:

1. every track's box is moved one frame ahead by its Kalman filter
   (:mod:`damoyolo.track.kalman`; lost tracks keep their position velocity, not their
   height velocity);
2. detections are split by score: ``high`` (score >= ``high_thresh``), ``low``
   (``low_thresh`` <= score < ``high_thresh``); the rest are dropped;
3. **first association**: confirmed and lost tracks against the high detections, cost
   ``1 - IoU`` (``1 - IoU * score`` with ``fuse_score``), Hungarian assignment, pairs with
   IoU (times score) below ``match_iou`` never matched; a lost track that matches is found
   again with its old id;
4. **second association**: the confirmed tracks still unmatched (not the lost ones) against
   the low detections, cost ``1 - IoU``, IoU >= ``low_match_iou``; a low-score detection
   can continue a track but is never the start of one;
5. confirmed tracks still unmatched become *lost*; a lost track is removed after
   ``max_lost`` frames without a match;
6. **tentative** tracks (born in an earlier frame, not yet confirmed) against the high
   detections left over, IoU >= ``tentative_match_iou``; a tentative track is confirmed
   (gets its id) after ``min_hits`` consecutive matched frames and removed at its first miss;
7. **birth**: high detections left over with score >= ``new_track_thresh`` start tentative
   tracks (confirmed at once when ``min_hits <= 1``, and in the very first frame).

Ids are consecutive integers from 1, given at confirmation.  ``per_class=True`` only
matches detections to tracks of the same class; by default association ignores the class
and a track takes the class of its latest detection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..errors import DamoyoloError
from .kalman import KalmanBoxFilter, xyah_to_xyxy, xyxy_to_xyah
from .matching import box_iou, greedy_assignment, linear_assignment, load_solver

__all__ = ["TrackerConfig", "ByteTrackConfig", "IoUTrackerConfig", "Tracks", "ByteTrack",
           "IoUTracker", "TRACKERS", "build_tracker", "TrackerError"]


class TrackerError(DamoyoloError, ValueError):
    """An invalid tracker name or setting."""


@dataclass(frozen=True)
class ByteTrackConfig:
    """Thresholds of :class:`ByteTrack` (see the module docstring for where each acts).

    Frame counts are in frames of the source; for a video at ``fps`` other than 30 scale
    ``max_lost`` (the CLI does: ``--track-buffer`` is in frames at 30 fps).
    """

    high_thresh: float = 0.5        # score of detections in the first association
    low_thresh: float = 0.1         # lowest score used at all (second association)
    new_track_thresh: float = 0.6   # lowest score that starts a track
    match_iou: float = 0.2          # first association: min IoU (IoU * score when fused)
    low_match_iou: float = 0.5      # second association: min IoU
    tentative_match_iou: float = 0.3  # tentative tracks: min IoU (IoU * score when fused)
    fuse_score: bool = True         # first/tentative cost 1 - IoU * score instead of 1 - IoU
    min_hits: int = 2               # consecutive matched frames that confirm a track
    max_lost: int = 30              # frames a lost track is kept for re-identification
    per_class: bool = False         # associate only within a class
    min_box_area: float = 0.0       # tracks with a smaller box are not reported
    birth_max_iou: float = 1.0      # no birth from a box overlapping a matched one more
    smooth_boxes: bool = False      # report the Kalman-corrected box, not the detection's
    std_pos: float = 1 / 20         # Kalman position noise, fraction of the box height
    std_vel: float = 1 / 160        # Kalman velocity noise, fraction of the box height

    def __post_init__(self):
        for name in ("high_thresh", "low_thresh", "new_track_thresh", "match_iou",
                     "low_match_iou", "tentative_match_iou", "birth_max_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise TrackerError(f"tracker setting {name}={v}: must be in [0, 1]")
        if self.low_thresh > self.high_thresh:
            raise TrackerError(f"tracker setting low_thresh={self.low_thresh} is above "
                               f"high_thresh={self.high_thresh}")
        if self.min_hits < 1 or self.max_lost < 0:
            raise TrackerError(f"tracker settings min_hits={self.min_hits} (>= 1) and "
                               f"max_lost={self.max_lost} (>= 0)")


@dataclass(frozen=True)
class IoUTrackerConfig:
    """The greedy IoU-only baseline: high detections matched to the previous frame's boxes,
    best IoU first; no motion model, no low-score stage, a track ends at its first miss."""

    high_thresh: float = 0.5        # detections below are ignored
    match_iou: float = 0.3          # min IoU with the track's last box
    min_hits: int = 1               # matched frames before a track is reported
    per_class: bool = False
    min_box_area: float = 0.0

    def __post_init__(self):
        if not (0 <= self.high_thresh <= 1 and 0 <= self.match_iou <= 1) or self.min_hits < 1:
            raise TrackerError(f"invalid IoU-tracker settings {asdict(self)}")


TrackerConfig = ByteTrackConfig | IoUTrackerConfig


@dataclass
class Tracks:
    """The tracks reported for one frame (numpy arrays).

    boxes: (K, 4) xyxy pixels (the detection the track matched in this frame);
    ids: (K,) int64 track ids (>= 1); scores: (K,) that detection's score; labels: (K,)
    int64 class indices; frame: 1-based frame number of the tracker.
    """

    boxes: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    frame: int = 0
    class_names: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(len(self.ids))

    @property
    def names(self) -> list[str]:
        if self.class_names is None:
            return [str(int(i)) for i in self.labels]
        return [self.class_names[int(i)] for i in self.labels]

    def to_list(self) -> list[dict]:
        """JSON-ready ``[{"id", "box": [x1, y1, x2, y2], "score", "label", "name"}, ...]``."""
        return [{"id": int(i), "box": [round(float(v), 2) for v in b],
                 "score": round(float(s), 5), "label": int(lab), "name": n}
                for i, b, s, lab, n in zip(self.ids.tolist(), self.boxes.tolist(),
                                           self.scores.tolist(), self.labels.tolist(),
                                           self.names)]


def _empty_tracks(frame: int, names=None) -> Tracks:
    return Tracks(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                  np.zeros(0, np.int64), frame, names)


def _as_arrays(boxes, scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def np_(x, dt):
        if hasattr(x, "detach"):  # torch tensor
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=dt)
    b = np_(boxes, np.float64).reshape(-1, 4)
    s = np_(scores, np.float64).reshape(-1)
    lab = np.zeros(len(s), np.int64) if labels is None else np_(labels, np.int64).reshape(-1)
    if not (len(b) == len(s) == len(lab)):
        raise TrackerError(f"detections disagree in length: {len(b)} boxes, {len(s)} scores, "
                           f"{len(lab)} labels")
    return b, s, lab


_TENTATIVE, _TRACKED, _LOST = 0, 1, 2


class ByteTrack:
    """ByteTrack-style tracker; see the module docstring.  ``ByteTrack(max_lost=60)`` or
    ``ByteTrack(ByteTrackConfig(...))``."""

    def __init__(self, config: ByteTrackConfig | None = None, **overrides):
        cfg = config or ByteTrackConfig()
        if overrides:
            cfg = _replace(cfg, overrides)
        self.cfg = cfg
        self.kf = KalmanBoxFilter(cfg.std_pos, cfg.std_vel)
        load_solver()
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        self.frame = 0
        self.next_id = 1
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.state = np.zeros(0, np.int8)
        self.ids = np.zeros(0, np.int64)     # 0 while tentative
        self.hits = np.zeros(0, np.int64)
        self.last = np.zeros(0, np.int64)    # frame of the last match
        self.labels = np.zeros(0, np.int64)
        self._skipped = 0

    @property
    def num_tracks(self) -> dict[str, int]:
        """Counts of tentative, tracked and lost tracks held now."""
        return {"tentative": int((self.state == _TENTATIVE).sum()),
                "tracked": int((self.state == _TRACKED).sum()),
                "lost": int((self.state == _LOST).sum())}

    def skip(self) -> None:
        """A frame without detections because it could not be read: time moves on (tracks
        age and their boxes move), but no track is marked lost or removed for it."""
        self.frame += 1
        self._skipped += 1

    def _cost(self, ti: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
              fuse: bool) -> np.ndarray:
        iou = box_iou(xyah_to_xyxy(self.mean[ti]), boxes)
        if fuse:
            iou = iou * scores[None, :]
        if self.cfg.per_class:
            iou = np.where(self.labels[ti][:, None] == labels[None, :], iou, 0.0)
        return 1.0 - iou

    def update(self, boxes, scores, labels=None) -> Tracks:
        """Detections of the next frame -> the confirmed tracks matched in it.

        boxes (N, 4) xyxy pixels, scores (N,), labels (N,) class indices (numpy arrays,
        lists or torch tensors; labels default to 0).  N may be 0.
        """
        b, s, lab = _as_arrays(boxes, scores, labels)
        cfg = self.cfg
        self.frame += 1
        steps = 1 + self._skipped
        self._skipped = 0
        if len(self.mean):
            lost = self.state == _LOST
            self.mean[lost, 7] = 0.0
            for _ in range(steps):
                self.mean, self.cov = self.kf.predict(self.mean, self.cov)

        keep = s >= cfg.low_thresh
        b, s, lab = b[keep], s[keep], lab[keep]
        high = np.flatnonzero(s >= cfg.high_thresh)
        low = np.flatnonzero(s < cfg.high_thresh)
        matched_t: list[np.ndarray] = []
        matched_d: list[np.ndarray] = []

        def associate(ti, di, min_iou, fuse):
            if not len(ti) or not len(di):
                return ti, di
            cost = self._cost(ti, b[di], s[di], lab[di], fuse)
            m, ur, uc = linear_assignment(cost, 1.0 - min_iou)
            matched_t.append(ti[m[:, 0]])
            matched_d.append(di[m[:, 1]])
            return ti[ur], di[uc]

        pool = np.flatnonzero(self.state != _TENTATIVE)
        rest_t, rest_high = associate(pool, high, cfg.match_iou, cfg.fuse_score)
        rest_tracked = rest_t[self.state[rest_t] == _TRACKED]
        rest_tracked, _ = associate(rest_tracked, low, cfg.low_match_iou, False)
        n_confirmed_matches = sum(len(x) for x in matched_t)
        tent = np.flatnonzero(self.state == _TENTATIVE)
        rest_tent, rest_high = associate(tent, rest_high, cfg.tentative_match_iou,
                                         cfg.fuse_score)

        # apply the matches
        mt = np.concatenate(matched_t) if matched_t else np.zeros(0, np.int64)
        md = np.concatenate(matched_d) if matched_d else np.zeros(0, np.int64)
        if len(mt):
            self.mean[mt], self.cov[mt] = self.kf.update(self.mean[mt], self.cov[mt],
                                                         xyxy_to_xyah(b[md]))
            self.hits[mt] += 1   # a tentative track is removed at its first miss
            self.last[mt] = self.frame
            self.labels[mt] = lab[md]
            conf_mt = mt[:n_confirmed_matches]
            self.state[conf_mt] = _TRACKED
            tent_mt = mt[n_confirmed_matches:]
            promote = tent_mt[self.hits[tent_mt] >= cfg.min_hits]
            self._confirm(promote)
        # misses: confirmed -> lost; tentative -> removed; lost too long -> removed
        self.state[rest_tracked] = _LOST
        remove = np.zeros(len(self.state), bool)
        remove[rest_tent] = True
        remove |= (self.state == _LOST) & (self.frame - self.last > cfg.max_lost)
        # births
        born = rest_high[s[rest_high] >= cfg.new_track_thresh]
        if cfg.birth_max_iou < 1.0 and len(born) and len(md):
            # another class's box of an object already tracked (class-wise NMS keeps both)
            born = born[box_iou(b[born], b[md]).max(1) <= cfg.birth_max_iou]
        det_of = np.full(len(self.state), -1, np.int64)
        det_of[mt] = md
        if remove.any():
            self._keep(~remove)
            det_of = det_of[~remove]
        if len(born):
            n0 = len(self.state)
            m, c = self.kf.initiate(xyxy_to_xyah(b[born]))
            k = len(born)
            self.mean = np.concatenate([self.mean, m])
            self.cov = np.concatenate([self.cov, c])
            self.state = np.concatenate([self.state, np.full(k, _TENTATIVE, np.int8)])
            self.ids = np.concatenate([self.ids, np.zeros(k, np.int64)])
            self.hits = np.concatenate([self.hits, np.ones(k, np.int64)])
            self.last = np.concatenate([self.last, np.full(k, self.frame, np.int64)])
            self.labels = np.concatenate([self.labels, lab[born]])
            det_of = np.concatenate([det_of, born])
            if cfg.min_hits <= 1 or self.frame == 1:
                self._confirm(np.arange(n0, n0 + k))
        out = np.flatnonzero((self.state == _TRACKED) & (self.last == self.frame))
        d = det_of[out]
        boxes_out = b[d]
        if cfg.min_box_area > 0 and len(out):
            area = (boxes_out[:, 2] - boxes_out[:, 0]) * (boxes_out[:, 3] - boxes_out[:, 1])
            ok = area >= cfg.min_box_area
            out, d, boxes_out = out[ok], d[ok], boxes_out[ok]
        order = np.argsort(self.ids[out], kind="stable")
        out, d = out[order], d[order]
        rep = xyah_to_xyxy(self.mean[out]) if cfg.smooth_boxes else b[d]
        return Tracks(rep.astype(np.float32), self.ids[out].copy(), s[d].astype(np.float32),
                      self.labels[out].copy(), self.frame)

    def update_detections(self, det, class_names: list[str] | None = None) -> Tracks:
        """:meth:`update` from a :class:`damoyolo.Detections`."""
        t = self.update(det.boxes, det.scores, det.labels)
        t.class_names = class_names if class_names is not None else det.class_names
        return t

    def _confirm(self, idx: np.ndarray) -> None:
        for i in idx.tolist():
            self.state[i] = _TRACKED
            if self.ids[i] == 0:
                self.ids[i] = self.next_id
                self.next_id += 1

    def _keep(self, m: np.ndarray) -> None:
        for name in ("mean", "cov", "state", "ids", "hits", "last", "labels"):
            setattr(self, name, getattr(self, name)[m])


class IoUTracker:
    """Greedy IoU-only baseline (see :class:`IoUTrackerConfig`); same interface as
    :class:`ByteTrack`."""

    def __init__(self, config: IoUTrackerConfig | None = None, **overrides):
        cfg = config or IoUTrackerConfig()
        if overrides:
            cfg = _replace(cfg, overrides)
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.frame = 0
        self.next_id = 1
        self.boxes = np.zeros((0, 4))
        self.tids = np.zeros(0, np.int64)
        self.hits = np.zeros(0, np.int64)
        self.labels = np.zeros(0, np.int64)

    def skip(self) -> None:
        self.frame += 1

    def update(self, boxes, scores, labels=None) -> Tracks:
        b, s, lab = _as_arrays(boxes, scores, labels)
        cfg = self.cfg
        self.frame += 1
        keep = s >= cfg.high_thresh
        b, s, lab = b[keep], s[keep], lab[keep]
        iou = box_iou(self.boxes, b)
        if cfg.per_class:
            iou = np.where(self.labels[:, None] == lab[None, :], iou, 0.0)
        m, _, new = greedy_assignment(1.0 - iou, 1.0 - cfg.match_iou)
        ids = np.concatenate([self.tids[m[:, 0]],
                              np.arange(self.next_id, self.next_id + len(new))])
        hits = np.concatenate([self.hits[m[:, 0]] + 1, np.ones(len(new), np.int64)])
        self.next_id += len(new)
        d = np.concatenate([m[:, 1], new]).astype(np.int64)
        self.boxes, self.tids, self.hits, self.labels = b[d], ids, hits, lab[d]
        ok = hits >= cfg.min_hits
        if cfg.min_box_area > 0:
            bb = b[d]
            ok &= (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1]) >= cfg.min_box_area
        order = np.argsort(ids[ok], kind="stable")
        sel = d[ok][order]
        return Tracks(b[sel].astype(np.float32), ids[ok][order], s[sel].astype(np.float32),
                      lab[sel], self.frame)

    update_detections = ByteTrack.update_detections


def _replace(cfg, overrides: dict):
    names = {f.name for f in fields(cfg)}
    bad = sorted(set(overrides) - names)
    if bad:
        import difflib
        hints = [difflib.get_close_matches(k, names, 1) for k in bad]
        hint = "; ".join(f"{k} (did you mean {h[0]}?)" if h else k for k, h in zip(bad, hints))
        raise TrackerError(f"unknown {type(cfg).__name__} setting {hint}; valid: "
                           f"{', '.join(sorted(names))}")
    import dataclasses
    return dataclasses.replace(cfg, **overrides)


# tracker name -> (class, config class); explicit, no registry
TRACKERS: dict[str, tuple[type, type]] = {
    "bytetrack": (ByteTrack, ByteTrackConfig),
    "iou": (IoUTracker, IoUTrackerConfig),
}


def build_tracker(name: str = "bytetrack", **settings) -> ByteTrack | IoUTracker:
    """A tracker by name (``bytetrack`` or ``iou``), with settings of its config class."""
    if name not in TRACKERS:
        raise TrackerError(f"unknown tracker {name!r}; choose one of {', '.join(TRACKERS)}")
    cls, _ = TRACKERS[name]
    return cls(**settings)
