"""Registering a folder of pairs: finding them by name, running them in
parallel, and writing one record per pair and algorithm (JSON Lines or CSV).
Used by ``moontrek batch``; no HTTP and no terminal handling in here."""

import concurrent.futures
import csv
import dataclasses
import json
import os
import re
import time
from pathlib import Path

import cv2

from .registration import RegistrationError, decode_image, register_images
from .registration.drawing import draw_view, encode_image

__all__ = ["Pair", "PairError", "find_pairs", "register_pair", "run_batch", "JsonLinesWriter", "CsvWriter",
           "writer_for", "CSV_COLUMNS"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"}
# NAME-user.EXT / NAME-model.EXT / NAME-layer.EXT, and the demo data's
# NN-userImage.png / NN-modelImage.png / NN-layerImage.png.
PAIR_FILE = re.compile(r"^(?P<name>.+)-(?P<role>user|model|layer)(?:Image)?$", re.IGNORECASE)


class PairError(ValueError):
    """The folder cannot be read as pairs (missing, empty, ambiguous)."""


@dataclasses.dataclass(frozen=True)
class Pair:
    """A photo and its model render, with an optional map layer."""

    name: str
    user: Path
    model: Path
    layer: Path = None


def find_pairs(folder):
    """The pairs in ``folder`` (not its subfolders), sorted by name, and the
    names left out for want of a photo or a model, as (pairs, incomplete).
    Two files for one name and role (``a-user.png`` and ``a-user.jpg``) are
    a PairError: which one was meant cannot be guessed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PairError(f"{folder} is not a folder.")
    found = {}
    for path in sorted(folder.iterdir()):
        match = PAIR_FILE.match(path.stem)
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS or not match:
            continue
        name, role = match["name"], match["role"].lower()
        roles = found.setdefault(name, {})
        if role in roles:
            raise PairError(f"{name!r} has two {role} files: {roles[role].name} and {path.name}.")
        roles[role] = path
    pairs, incomplete = [], []
    for name, roles in sorted(found.items()):
        if "user" in roles and "model" in roles:
            pairs.append(Pair(name, roles["user"], roles["model"], roles.get("layer")))
        else:
            incomplete.append(name)
    return pairs, incomplete


def _read(path, field, **options):
    with open(path, "rb") as file:
        return decode_image(file.read(), field=field, **options)


def register_pair(pair, algorithm, *, pipeline=None, overlays=None):
    """Register one pair with one algorithm; a record (a dict of plain JSON
    values), never an exception: a failure is ``ok: false`` and its message.
    With ``overlays`` (a folder), the overlay is written there as
    NAME-ALGORITHM.png."""
    started = time.perf_counter()
    record = {"name": pair.name, "algorithm": algorithm.upper()}
    try:
        user = _read(pair.user, "user-file")
        model = _read(pair.model, "model-file")
        result = register_images(user, model, algorithm, pipeline=pipeline)
        record.update(ok=True, homography_matrix=result.homography_list(), **result.summary())
        if overlays is not None:
            layers = [_read(pair.layer, "layer-file", keep_alpha=True)] if pair.layer else None
            path = Path(overlays) / f"{pair.name}-{algorithm.upper()}.png"
            path.write_bytes(encode_image(draw_view("overlay", result, user, model, layers)))
            record["overlay"] = str(path)
    except RegistrationError as exc:
        record.update(ok=False, error=exc.message)
    except OSError as exc:
        record.update(ok=False, error=f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except Exception as exc:  # one broken pair must not stop the batch
        record.update(ok=False, error=f"unexpected error: {exc!r}")
    record["ms"] = round((time.perf_counter() - started) * 1000.0, 1)
    return record


def _init_worker():
    # The jobs are the parallelism: one OpenCV thread each (see README).
    cv2.setNumThreads(1)


def run_batch(pairs, algorithms, *, jobs=None, pipeline=None, overlays=None, executor="thread"):
    """Register every pair with every algorithm, ``jobs`` at a time; yield
    the records in input order (pair, then algorithm) as they become ready.

    Threads by default: OpenCV releases the GIL, and threads start at once
    and share the imported modules (``executor="process"`` for comparison;
    see benchmarks/bench_batch.py)."""
    jobs = jobs or os.cpu_count() or 1
    tasks = [(pair, algorithm) for pair in pairs for algorithm in algorithms]
    if jobs > 1:
        _init_worker()
    pool_class = (
        concurrent.futures.ProcessPoolExecutor if executor == "process" else concurrent.futures.ThreadPoolExecutor
    )
    with pool_class(max_workers=jobs, initializer=_init_worker) as pool:
        futures = [
            pool.submit(register_pair, pair, algorithm, pipeline=pipeline, overlays=overlays)
            for pair, algorithm in tasks
        ]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


class JsonLinesWriter:
    """One JSON object per line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, record):
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


#: The CSV's columns: the homography flattened row by row, the nested
#: quality fields flattened with underscores.
CSV_COLUMNS = [
    "name", "algorithm", "ok", "error",
    *(f"h{row}{col}" for row in range(3) for col in range(3)),
    "implementation", "pipeline", "keypoints_user", "keypoints_model", "matches", "inliers", "inlier_ratio",
    "reprojection_error_px", "estimator",
    "circle_user_x", "circle_user_y", "circle_user_radius",
    "circle_model_x", "circle_model_y", "circle_model_radius",
    "elapsed_ms", "ms", "overlay",
]


class CsvWriter:
    """One row per record, with the columns of :data:`CSV_COLUMNS`."""

    def __init__(self, stream):
        self.stream = stream
        self.writer = csv.DictWriter(stream, CSV_COLUMNS, extrasaction="ignore")
        self.writer.writeheader()

    def write(self, record):
        row = dict(record)
        for r, values in enumerate(record.get("homography_matrix") or []):
            for c, value in enumerate(values):
                row[f"h{r}{c}"] = value
        for side, count in (record.get("keypoints") or {}).items():
            row[f"keypoints_{side}"] = count
        for side, circle in (record.get("circles") or {}).items():
            for key, value in circle.items():
                row[f"circle_{side}_{key}"] = value
        self.writer.writerow(row)
        self.stream.flush()


def writer_for(path, stream):
    """CSV when ``path`` ends in .csv, else JSON Lines."""
    return CsvWriter(stream) if path and str(path).lower().endswith(".csv") else JsonLinesWriter(stream)
