"""Our SURF run on worker processes, beside the threads of a server.

OpenCV's detectors release the GIL for nearly all their work; our SURF
(``surf.py``) is thousands of NumPy and OpenCV calls an image, and between
them it holds the GIL. Two requests' SURF in one process therefore take
turns more than they run side by side, and the hand-overs cost CPU of their
own: on the 2-core development machine two threads registered demo pairs
with SURF no faster than one. The moon pipeline's canvases are small (276
x 276 bytes and a mask), so sending them to another process and the
keypoints back costs under a millisecond, while each process has a GIL of
its own.

:func:`start` makes the pool (``moontrek serve`` does, see the
``surf_processes`` setting); until then, and after :func:`stop`,
:func:`detect_and_compute` runs in the calling thread. A worker that dies
(killed, out of memory) breaks the pool: the call it broke, and the calls
after it until a new pool is up, run in their own thread, and the pool is
made anew.
"""

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2

from .surf import SURF, keypoints_from_columns

__all__ = ["start", "stop", "running", "detect_and_compute"]

logger = logging.getLogger("moontrek.surf_pool")

_LOCK = threading.Lock()
_POOL = None
_PROCESSES = 0
# How often a worker checks that the server is still there.
_WATCH_SECONDS = 1.0
# Pools broken one after the other without an answer between them.
_BROKEN = 0
_MAX_BROKEN = 3


def start(processes):
    """Describe with our SURF on ``processes`` worker processes from now on
    (0: in the calling thread). The workers start in the background."""
    global _PROCESSES
    stop()
    if not sys.platform.startswith("linux"):
        # The workers are forked from a fork server: Linux, as for the
        # server's own worker processes.
        return
    with _LOCK:
        _PROCESSES = max(0, int(processes))
    pool = _pool()
    if pool is not None:
        try:
            # Started now, not by the first request; not waited for.
            for _ in range(_PROCESSES):
                pool.submit(int)
        except BrokenProcessPool:
            _replace(pool)
        except Exception as error:  # noqa: BLE001 - whatever stops processes starting
            _give_up(pool, error)


def stop():
    """Shut the workers down (waiting for the calls in flight)."""
    global _POOL, _PROCESSES, _BROKEN
    with _LOCK:
        pool, _POOL, _PROCESSES, _BROKEN = _POOL, None, 0, 0
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def running():
    """How many worker processes describe with our SURF (0: none)."""
    return _PROCESSES if _POOL is not None else 0


def _pool():
    global _POOL, _PROCESSES
    with _LOCK:
        if _POOL is None and _PROCESSES:
            # forkserver: the workers are forked from a clean process, never
            # from this one with its threads (and their locks) mid-flight.
            context = multiprocessing.get_context("forkserver")
            # Imported once in the fork server, shared by every worker.
            context.set_forkserver_preload([__name__])
            try:
                _POOL = ProcessPoolExecutor(
                    _PROCESSES, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),)
                )
            except Exception as error:  # noqa: BLE001 - e.g. no /dev/shm for its locks
                logger.warning("SURF worker processes cannot start (%s); SURF runs in the requests' threads", error)
                _PROCESSES = 0
        return _POOL


def _give_up(pool, error):
    """No workers for the rest of this process's life: they cannot start."""
    global _POOL, _PROCESSES
    with _LOCK:
        if _POOL is pool or _POOL is None:
            _POOL, _PROCESSES = None, 0
    logger.warning("SURF worker processes cannot start (%s); SURF runs in the requests' threads", error)
    pool.shutdown(wait=False, cancel_futures=True)


def _replace(broken):
    global _POOL, _BROKEN
    with _LOCK:
        if _POOL is not broken:
            return
        _POOL = None
        _BROKEN += 1
        hopeless = _BROKEN >= _MAX_BROKEN
    if hopeless:
        # Pools that break before they ever answer: their workers die as
        # they start, so stop making them.
        _give_up(broken, f"{_MAX_BROKEN} pools in a row broke")
        return
    logger.warning("a SURF worker process died; starting new ones")
    broken.shutdown(wait=False, cancel_futures=True)


def _worker_init(server):
    # Ctrl+C reaches the whole process group: the server decides when the
    # workers stop, not the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    threading.Thread(target=_exit_with, args=(server,), daemon=True, name="moontrek-surf-watch").start()


def _exit_with(server):
    """End this worker once the server is gone: killed outright, it shuts
    no pool down, and the workers (which hold their own ends of the pool's
    pipes) would wait for work for ever."""
    while True:
        time.sleep(_WATCH_SECONDS)
        try:
            os.kill(server, 0)
        except (ProcessLookupError, PermissionError):  # gone, or the pid went to another user's process
            os._exit(0)


def detect_and_compute(surf, image, mask=None):
    """``surf.detectAndCompute(image, mask)`` for our :class:`SURF`, on a
    worker process when the pool runs: the same keypoints and descriptors."""
    pool = _pool() if isinstance(surf, SURF) else None
    if pool is None:
        return surf.detectAndCompute(image, mask)
    try:
        future = pool.submit(_describe, image, mask, _settings(surf))
    except BrokenProcessPool:
        _replace(pool)
        return surf.detectAndCompute(image, mask)
    except RuntimeError:
        # Shut down meanwhile (stop()).
        return surf.detectAndCompute(image, mask)
    except Exception as error:  # noqa: BLE001 - whatever stops processes starting
        _give_up(pool, error)
        return surf.detectAndCompute(image, mask)
    try:
        columns, descriptors = future.result()
    except BrokenProcessPool:
        _replace(pool)
        return surf.detectAndCompute(image, mask)
    except CancelledError:
        return surf.detectAndCompute(image, mask)
    _answered()
    return keypoints_from_columns(columns), descriptors


def _answered():
    global _BROKEN
    if _BROKEN:
        with _LOCK:
            _BROKEN = 0


def _settings(surf):
    return (surf.hessianThreshold, surf.nOctaves, surf.nOctaveLayers, surf.extended, surf.upright,
            surf.maxKeypointSize)


def _describe(image, mask, settings):
    *parameters, largest = settings
    surf = SURF(*parameters)
    surf.setMaxKeypointSize(largest)
    return surf.detect_and_compute_columns(image, mask)
