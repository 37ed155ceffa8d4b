"""The web layer's view of the engine: the engine's functions bound to the
server's configuration."""

import contextlib
import logging
import threading

import falcon

from .registration import DEFAULT_PIPELINE, PIPELINES, algorithm_table, decode_image, get_algorithm, get_pipeline, register
from .registration.moon import find_moon

__all__ = ["Registrar"]

logger = logging.getLogger("moontrek.registration")

# Seconds a client is asked to wait when every registration slot is busy.
BUSY_RETRY_AFTER = 2


class Registrar:
    """Registers uploads with the configured algorithms, pipeline and limits."""

    def __init__(
        self,
        *,
        surf_enabled=True,
        max_image_pixels=None,
        default_pipeline=None,
        max_concurrent=None,
        wait_seconds=10.0,
    ):
        self.surf_enabled = surf_enabled
        self.max_image_pixels = max_image_pixels
        self.default_pipeline = default_pipeline
        # OpenCV releases the GIL, so registrations really run in parallel:
        # more at once than there are cores only adds memory and latency.
        self.max_concurrent = max_concurrent
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None

    @contextlib.contextmanager
    def _slot(self):
        """Hold one registration slot, or answer 503 when none frees up in
        time: a bounded wait instead of an unbounded queue."""
        if self._slots is None:
            yield
            return
        if not self._slots.acquire(timeout=self.wait_seconds):
            logger.warning("busy: no registration slot free within %.1fs", self.wait_seconds)
            raise falcon.HTTPServiceUnavailable(
                title="Server busy",
                description="The server is busy with other registrations; try again in a few seconds.",
                retry_after=BUSY_RETRY_AFTER,
            )
        try:
            yield
        finally:
            self._slots.release()

    def _pipeline(self, pipeline):
        return pipeline or self.default_pipeline

    def check(self, algorithm, pipeline=None):
        """Raise the engine's error now if the algorithm or pipeline is not served."""
        get_algorithm(algorithm, surf_enabled=self.surf_enabled)
        get_pipeline(self._pipeline(pipeline))

    def register(self, user_bytes, model_bytes, algorithm, *, pipeline=None):
        with self._slot():
            return register(
                user_bytes,
                model_bytes,
                algorithm,
                pipeline=self._pipeline(pipeline),
                surf_enabled=self.surf_enabled,
                max_pixels=self.max_image_pixels,
                # Large JPEG photos decoded at the scale the pipeline needs.
                reduced_decode=True,
            )

    def detect_moon(self, image_bytes):
        """The Moon's disk in an uploaded photo (a Circle), or NoMoonError."""
        with self._slot():
            image = decode_image(image_bytes, field="image-file", max_pixels=self.max_image_pixels)
            return find_moon(image)

    def algorithms(self):
        return [entry.as_dict() for entry in algorithm_table(surf_enabled=self.surf_enabled).values()]

    def pipelines(self):
        return {"available": sorted(PIPELINES), "default": self._pipeline(None) or DEFAULT_PIPELINE}
