"""What a registration returns."""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RegistrationResult"]


@dataclass
class RegistrationResult:
    """A homography (user pixels -> fitted model pixels) and how it was found."""

    homography: np.ndarray
    algorithm: str
    implementation: str
    pipeline: str
    keypoints_user: int
    keypoints_model: int
    matches: int
    inliers: int
    elapsed_ms: float = 0.0
    extras: dict = field(default_factory=dict)
    #: The inlier matches as (user Nx2 photo px, model Nx2 fitted-model px),
    #: for drawing; not part of the payload.
    inlier_points: tuple = field(default=None, repr=False, compare=False)

    @property
    def inlier_ratio(self):
        return self.inliers / self.matches if self.matches else 0.0

    def homography_list(self):
        """The homography as plain JSON numbers (3 lists of 3 floats)."""
        return [[float(value) for value in row] for row in np.asarray(self.homography)]

    def summary(self):
        """Counts and timings for logs and the success payload."""
        return {
            "algorithm": self.algorithm,
            "implementation": self.implementation,
            "pipeline": self.pipeline,
            "keypoints": {"user": self.keypoints_user, "model": self.keypoints_model},
            "matches": self.matches,
            "inliers": self.inliers,
            "inlier_ratio": round(self.inlier_ratio, 4),
            "elapsed_ms": round(self.elapsed_ms, 1),
            **self.extras,
        }
