"""The web layer's view of the engine: the engine's functions bound to the
server's configuration."""

import logging

from .registration import PIPELINES, algorithm_table, get_algorithm, register
from .registration.errors import RegistrationError

__all__ = ["Registrar"]

logger = logging.getLogger("moontrek.registration")


class Registrar:
    """Registers uploads with the configured algorithms, pipeline and limits."""

    def __init__(self, *, surf_enabled=True, max_image_pixels=None, default_pipeline=None):
        self.surf_enabled = surf_enabled
        self.max_image_pixels = max_image_pixels
        self.default_pipeline = default_pipeline

    def _pipeline(self, pipeline):
        return pipeline or self.default_pipeline

    def check(self, algorithm, pipeline=None):
        """Raise the engine's error now if the algorithm or pipeline is not served."""
        get_algorithm(algorithm, surf_enabled=self.surf_enabled)
        name = self._pipeline(pipeline)
        if name is not None and name.strip().lower() not in PIPELINES:
            raise RegistrationError(
                f"Unknown pipeline {name[:40]!r}: use one of {', '.join(sorted(PIPELINES))}."
            )

    def register(self, user_bytes, model_bytes, algorithm, *, pipeline=None):
        try:
            return register(
                user_bytes,
                model_bytes,
                algorithm,
                pipeline=self._pipeline(pipeline),
                surf_enabled=self.surf_enabled,
                max_pixels=self.max_image_pixels,
            )
        except RegistrationError as exc:
            logger.info("registration with %s refused: %s", str(algorithm)[:40], exc.message)
            raise

    def algorithms(self):
        return [entry.as_dict() for entry in algorithm_table(surf_enabled=self.surf_enabled).values()]

    def pipelines(self):
        return {"available": sorted(PIPELINES), "default": self._pipeline(None) or "classic"}
