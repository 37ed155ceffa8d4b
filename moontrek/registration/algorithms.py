"""The dispatch table: algorithm names to detector constructors.

OpenCV moves constructors between releases (AKAZE and BRISK are ``cv2.*`` in
4.x and ``cv2.xfeatures2d.*`` in 5.x), so each is looked up, not assumed.
SURF is patented and excluded from PyPI's wheels: OpenCV's is used when the
installed build has it, the project's own otherwise.
"""

from dataclasses import dataclass

import cv2

from .errors import AlgorithmUnavailableError, UnknownAlgorithmError

__all__ = ["Algorithm", "ALGORITHM_NAMES", "algorithm_table", "get_algorithm"]

ALGORITHM_NAMES = ("SIFT", "ORB", "AKAZE", "BRISK", "SURF")

SURF_DISABLED_REASON = (
    "SURF is switched off on this server by its operator "
    "(the algorithm is patented; see the server's README)."
)


@dataclass(frozen=True)
class Algorithm:
    """One entry of the dispatch table."""

    name: str
    create: object  # callable returning a Feature2D, or None when unavailable
    implementation: str  # "opencv", "moontrek" or "none"
    reason: str = ""

    @property
    def available(self):
        return self.create is not None

    def as_dict(self):
        entry = {"name": self.name, "available": self.available, "implementation": self.implementation}
        if not self.available:
            entry["reason"] = self.reason
        return entry


def _find_constructor(attribute):
    for namespace in (cv2, getattr(cv2, "xfeatures2d", None)):
        constructor = getattr(namespace, attribute, None) if namespace is not None else None
        if constructor is not None:
            return constructor
    return None


def _opencv_algorithm(name):
    constructor = _find_constructor(f"{name}_create")
    if constructor is None:
        return Algorithm(name, None, "none", f"{name} is not in the installed OpenCV {cv2.__version__}.")
    return Algorithm(name, constructor, "opencv")


def _surf_algorithm():
    constructor = _find_constructor("SURF_create")
    if constructor is not None:
        try:
            # Stock wheels define SURF_create but raise "patented ... excluded".
            constructor()
            return Algorithm("SURF", constructor, "opencv")
        except cv2.error:
            pass
    try:
        from .surf import SURF
    except ImportError:
        return Algorithm(
            "SURF",
            None,
            "none",
            "SURF is not available on this server: the installed OpenCV excludes it "
            "(it is patented) and the server's own SURF is not installed.",
        )
    return Algorithm("SURF", SURF, "moontrek")


_TABLE = None


def _build_table():
    global _TABLE
    if _TABLE is None:
        table = {name: _opencv_algorithm(name) for name in ALGORITHM_NAMES if name != "SURF"}
        table["SURF"] = _surf_algorithm()
        _TABLE = table
    return _TABLE


def algorithm_table(*, surf_enabled=True):
    """Return the dispatch table, name -> :class:`Algorithm`, for this build
    and configuration."""
    table = dict(_build_table())
    if not surf_enabled:
        table["SURF"] = Algorithm("SURF", None, "none", SURF_DISABLED_REASON)
    return table


def get_algorithm(name, *, surf_enabled=True):
    """Look ``name`` up case-insensitively; raise when unknown or unavailable."""
    key = str(name).strip().upper()
    table = algorithm_table(surf_enabled=surf_enabled)
    if key not in table:
        shown = name if len(str(name)) <= 40 else str(name)[:40] + "..."
        raise UnknownAlgorithmError(
            f"Unknown algorithm {shown!r}: use one of {', '.join(ALGORITHM_NAMES)}."
        )
    algorithm = table[key]
    if not algorithm.available:
        raise AlgorithmUnavailableError(algorithm.reason)
    return algorithm
