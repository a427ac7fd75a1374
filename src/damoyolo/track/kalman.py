"""A constant-velocity Kalman filter on box state, batched over tracks (numpy).

State of one track (8,): ``(cx, cy, a, h, vcx, vcy, va, vh)`` -- box centre, aspect ratio
``a = w / h``, height, and their velocities in pixels (ratio) per frame.  Measurements are
``(cx, cy, a, h)``.  Noise scales with the box height, so the filter behaves the same for
small and large objects:

* process noise std: ``std_pos * h`` for cx, cy, h and ``std_vel * h`` for their
  velocities; the aspect ratio gets a fixed ``1e-2`` (position) / ``1e-5`` (velocity);
* measurement noise std: ``std_pos * h`` for cx, cy, h, ``1e-1`` for a;
* a new track starts at the measurement with zero velocity and std ``2 * std_pos * h``
  (position) / ``10 * std_vel * h`` (velocity).

Every function takes and returns arrays over N tracks at once: means (N, 8), covariances
(N, 8, 8); nothing loops in Python over tracks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KalmanBoxFilter", "xyxy_to_xyah", "xyah_to_xyxy"]


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) (cx, cy, w / h, h); heights are floored at 1e-3."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = np.maximum(b[:, 3] - b[:, 1], 1e-3)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, w / h, h], 1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, >=4) (cx, cy, a, h, ...) -> (N, 4) xyxy."""
    cx, cy, a, h = (xyah[:, i] for i in range(4))
    w = a * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


class KalmanBoxFilter:
    """Batched constant-velocity filter; ``std_pos`` / ``std_vel`` are fractions of the
    box height per frame (see the module docstring)."""

    def __init__(self, std_pos: float = 1 / 20, std_vel: float = 1 / 160):
        self.std_pos = float(std_pos)
        self.std_vel = float(std_vel)
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)

    def initiate(self, meas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Measurements (N, 4) xyah -> means (N, 8), covariances (N, 8, 8)."""
        n = len(meas)
        mean = np.zeros((n, 8))
        mean[:, :4] = meas
        h = meas[:, 3]
        sp, sv = 2 * self.std_pos * h, 10 * self.std_vel * h
        std = np.stack([sp, sp, np.full(n, 1e-2), sp, sv, sv, np.full(n, 1e-5), sv], 1)
        cov = np.zeros((n, 8, 8))
        idx = np.arange(8)
        cov[:, idx, idx] = std ** 2
        return mean, cov

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead for every track: (N, 8), (N, 8, 8) -> new arrays."""
        if not len(mean):
            return mean, cov
        h = mean[:, 3]
        n = len(mean)
        sp, sv = self.std_pos * h, self.std_vel * h
        q = np.stack([sp, sp, np.full(n, 1e-2), sp, sv, sv, np.full(n, 1e-5), sv], 1) ** 2
        new_mean = mean @ self.F.T
        new_cov = self.F @ cov @ self.F.T
        idx = np.arange(8)
        new_cov[:, idx, idx] += q
        return new_mean, new_cov

    def update(self, mean: np.ndarray, cov: np.ndarray, meas: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Correct N tracks with N measurements (N, 4) xyah -> new means, covariances."""
        if not len(mean):
            return mean, cov
        h = mean[:, 3]
        n = len(mean)
        sp = self.std_pos * h
        r = np.stack([sp, sp, np.full(n, 1e-1), sp], 1) ** 2
        s = cov[:, :4, :4].copy()
        idx = np.arange(4)
        s[:, idx, idx] += r
        # gain K = P H^T S^-1, solved as K^T = S^-1 (H P) (S is symmetric)
        kt = np.linalg.solve(s, cov[:, :4, :])            # (N, 4, 8)
        gain = kt.transpose(0, 2, 1)                       # (N, 8, 4)
        innov = meas - mean[:, :4]
        new_mean = mean + np.einsum("nij,nj->ni", gain, innov)
        new_cov = cov - gain @ cov[:, :4, :]
        return new_mean, new_cov
