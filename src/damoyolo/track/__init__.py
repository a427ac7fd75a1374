"""Multi-object tracking: ByteTrack-style association on numpy, MOT files and metrics.

    from damoyolo.track import ByteTrack
    tracker = ByteTrack()                       # thresholds: ByteTrackConfig
    for det in detections_per_frame:            # damoyolo.Detections, frame by frame
        tracks = tracker.update_detections(det) # Tracks: boxes, ids, scores, labels

    for r in damoyolo.Detector("best.pt").track("video.mp4"):   # frames -> tracks
        r.tracks.ids, r.det_ms, r.track_ms

    for r in track_stream(detect, frames):      # any images -> detections callable
        ...

Nothing here imports a detector or a source (:mod:`damoyolo.infer`); runs that write files
are in :mod:`damoyolo.workflows.track`.  See docs/tracking.md.
"""

from .api import TrackFrame, track_stream
from .bytetrack import (TRACKERS, ByteTrack, ByteTrackConfig, IoUTracker, IoUTrackerConfig,
                        TrackerError, Tracks, build_tracker)
from .io import MOTWriter, read_mot_txt
from .kalman import KalmanBoxFilter
from .matching import box_iou, greedy_assignment, linear_assignment

__all__ = ["TRACKERS", "ByteTrack", "ByteTrackConfig", "IoUTracker", "IoUTrackerConfig",
           "TrackerError", "Tracks", "build_tracker", "MOTWriter", "read_mot_txt",
           "KalmanBoxFilter", "box_iou", "greedy_assignment", "linear_assignment",
           "TrackFrame", "track_stream"]
