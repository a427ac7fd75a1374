"""Drawing tracks: a box and ``id class score`` label per track, colour per id, and
optional trails (the last centres of each track)."""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from ..viz import color_for
from .bytetrack import Tracks

__all__ = ["TrackDrawer"]


class TrackDrawer:
    """Draw frames one after the other; ``trail`` > 0 keeps that many past centres per id
    and draws them as a line."""

    def __init__(self, trail: int = 0):
        self.trail = int(trail)
        self.history: dict[int, deque] = {}
        self._seen: dict[int, int] = {}
        self._n = 0

    def __call__(self, img_rgb: np.ndarray, tracks: Tracks) -> np.ndarray:
        out = np.ascontiguousarray(img_rgb.copy())
        h, w = out.shape[:2]
        t = max(1, round(min(h, w) / 320))
        fs = max(0.35, min(h, w) / 1200)
        self._n += 1
        if self.trail > 0:
            for tid in [k for k, n in self._seen.items() if self._n - n > self.trail]:
                del self.history[tid], self._seen[tid]  # not seen for a trail's length
            for (x1, y1, x2, y2), tid in zip(tracks.boxes.tolist(), tracks.ids.tolist()):
                q = self.history.setdefault(tid, deque(maxlen=self.trail))
                q.append((int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2))))
                self._seen[tid] = self._n
            live = set(tracks.ids.tolist())
            for tid, q in self.history.items():
                if tid in live and len(q) > 1:
                    pts = np.asarray(q, np.int32).reshape(-1, 1, 2)
                    cv2.polylines(out, [pts], False, color_for(tid), t, cv2.LINE_AA)
        for box, tid, s, name in zip(tracks.boxes.tolist(), tracks.ids.tolist(),
                                     tracks.scores.tolist(), tracks.names):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            c = color_for(tid)
            cv2.rectangle(out, (x1, y1), (x2, y2), c, t)
            text = f"{tid} {name} {s:.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            ty = max(y1, th + base + 2)
            cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 2, ty), c, -1)
            cv2.putText(out, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, fs,
                        (0, 0, 0), 1, cv2.LINE_AA)
        return out
