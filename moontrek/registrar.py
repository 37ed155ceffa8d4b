"""The web layer's view of the engine: the engine's functions bound to the
server's configuration."""

import contextlib
import logging
import threading
import time

import falcon

from .registration import (
    DEFAULT_PIPELINE,
    PIPELINES,
    ImageError,
    RegistrationError,
    algorithm_table,
    decode_image,
    get_algorithm,
    get_pipeline,
    register,
    register_images,
)
from .registration.drawing import draw_view, encode_image
from .registration.moon_pipeline import find_moon_on_limb

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
        parallel_sides=True,
        metrics=None,
    ):
        self.surf_enabled = surf_enabled
        self.parallel_sides = parallel_sides
        self.max_image_pixels = max_image_pixels
        self.default_pipeline = default_pipeline
        # OpenCV releases the GIL, so registrations really run in parallel:
        # more at once than there are cores only adds memory and latency.
        self.max_concurrent = max_concurrent
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None
        self.metrics = metrics

    @contextlib.contextmanager
    def _slot(self):
        """Hold one registration slot, or answer 503 when none frees up in
        time: a bounded wait instead of an unbounded queue."""
        if self._slots is not None:
            started = time.perf_counter()
            acquired = self._slots.acquire(timeout=self.wait_seconds)
            if self.metrics is not None:
                self.metrics.slot_wait.observe(time.perf_counter() - started)
            if not acquired:
                if self.metrics is not None:
                    self.metrics.busy.inc()
                logger.warning("busy: no registration slot free within %.1fs", self.wait_seconds)
                raise falcon.HTTPServiceUnavailable(
                    title="Server busy",
                    description="The server is busy with other registrations; try again in a few seconds.",
                    retry_after=BUSY_RETRY_AFTER,
                )
        in_progress = self.metrics.in_progress if self.metrics is not None else None
        if in_progress is not None:
            in_progress.inc()
        try:
            yield
        finally:
            if in_progress is not None:
                in_progress.dec()
            if self._slots is not None:
                self._slots.release()

    @contextlib.contextmanager
    def _counted(self, counter, success, labels=()):
        # ``counter`` names a labelled counter of moontrek.metrics.Metrics.
        """Count the outcome of the work inside: ``success``, ``refused``
        (the documented 422), ``invalid`` (the input: 400, 413) or ``error``."""
        outcome = "error"
        try:
            yield
            outcome = success
        except ImageError:
            outcome = "invalid"
            raise
        except RegistrationError:
            outcome = "refused"
            raise
        finally:
            if self.metrics is not None:
                getattr(self.metrics, counter).labels(*labels, outcome).inc()

    def _pipeline(self, pipeline):
        return pipeline or self.default_pipeline

    def check(self, algorithm, pipeline=None):
        """Raise the engine's error now if the algorithm or pipeline is not served."""
        get_algorithm(algorithm, surf_enabled=self.surf_enabled)
        get_pipeline(self._pipeline(pipeline))

    def register(self, user_bytes, model_bytes, algorithm, *, pipeline=None):
        # check() has vouched for both names, so the labels stay bounded.
        name = get_algorithm(algorithm, surf_enabled=self.surf_enabled).name
        pipeline = self._pipeline(pipeline) or DEFAULT_PIPELINE
        with self._slot(), self._counted("registrations", "registered", (name, pipeline)):
            started = time.perf_counter()
            try:
                return register(
                    user_bytes,
                    model_bytes,
                    algorithm,
                    pipeline=pipeline,
                    surf_enabled=self.surf_enabled,
                    max_pixels=self.max_image_pixels,
                    # Large JPEG photos decoded at the scale the pipeline needs.
                    reduced_decode=True,
                    parallel=self.parallel_sides,
                )
            finally:
                if self.metrics is not None:
                    self.metrics.registration_duration.labels(name).observe(time.perf_counter() - started)

    def overlay(
        self, user_bytes, model_bytes, layer_bytes, algorithm, *, pipeline=None, view="overlay", transparency=1.0,
        image_format="png",
    ):
        """Register, then draw ``view`` and encode it: (result, image bytes,
        drawing milliseconds). Layers are decoded one at a time as they are
        drawn, so eight large layers never sit in memory together."""
        name = get_algorithm(algorithm, surf_enabled=self.surf_enabled).name
        pipeline = self._pipeline(pipeline) or DEFAULT_PIPELINE
        with self._slot(), self._counted("registrations", "registered", (name, pipeline)):
            started = time.perf_counter()
            user = decode_image(user_bytes, field="user-file", max_pixels=self.max_image_pixels)
            model = decode_image(model_bytes, field="model-file", max_pixels=self.max_image_pixels)
            result = register_images(user, model, algorithm, pipeline=pipeline, surf_enabled=self.surf_enabled)
            result.elapsed_ms = (time.perf_counter() - started) * 1000.0
            drawing = time.perf_counter()
            layers = None
            if layer_bytes:
                layers = (
                    decode_image(data, field=f"layer-file #{number}", max_pixels=self.max_image_pixels,
                                 keep_alpha=True)
                    for number, data in enumerate(layer_bytes, 1)
                )
            image = encode_image(draw_view(view, result, user, model, layers, transparency), image_format)
            return result, image, (time.perf_counter() - drawing) * 1000.0

    def detect_moon(self, image_bytes):
        """The Moon's disk in an uploaded photo (a Circle), or NoMoonError."""
        with self._slot(), self._counted("moon_detections", "found"):
            image = decode_image(image_bytes, field="image-file", max_pixels=self.max_image_pixels)
            return find_moon_on_limb(image)

    def surf_implementation(self):
        """Which code serves SURF here: ``opencv``, ``moontrek`` or ``disabled``."""
        entry = algorithm_table(surf_enabled=self.surf_enabled)["SURF"]
        return entry.implementation if entry.available else "disabled"

    def algorithms(self):
        return [entry.as_dict() for entry in algorithm_table(surf_enabled=self.surf_enabled).values()]

    def pipelines(self):
        return {"available": sorted(PIPELINES), "default": self._pipeline(None) or DEFAULT_PIPELINE}
