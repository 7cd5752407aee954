"""Face boxes for images whose source gives none: MediaPipe face detection (short-range model).

Aligned crops (MS1MV3's 112x112) are often missed by a detector because the face fills the frame;
images no larger than `aligned_max_side` fall back to a box covering the image's face region.
"""

from __future__ import annotations

import numpy as np


class FaceDetector:
    def __init__(self, min_confidence: float = 0.5, aligned_max_side: int = 160):
        import mediapipe as mp

        self.det = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)
        self.aligned_max_side = aligned_max_side

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        res = self.det.process(image)
        if res.detections:
            best = max(res.detections, key=lambda d: d.score[0])
            b = best.location_data.relative_bounding_box
            x0, y0 = b.xmin * w, b.ymin * h
            # MediaPipe's box runs from the brows to the mouth; extend it down to the chin
            return np.array([x0, y0, x0 + b.width * w, y0 + b.height * h * 1.15])
        if max(h, w) <= self.aligned_max_side:
            return np.array([0.12 * w, 0.12 * h, 0.88 * w, 0.95 * h])  # the ArcFace-aligned face region
        return None
