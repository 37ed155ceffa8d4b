"""Our SURF on worker processes (``moontrek.registration.surf_pool``)."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from moontrek.registration import surf_pool
from moontrek.registration.surf import SURF
from moontrek.synthetic import render_moon
from tests.conftest import keypoint_rows
from tests.servers import alive

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the SURF workers run on Linux only")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def canvas():
    """A grey Moon on a 276 px canvas and its disk mask, as the moon pipeline describes."""
    grey = cv2.cvtColor(render_moon(276, seed=5), cv2.COLOR_BGR2GRAY)
    mask = np.zeros_like(grey)
    cv2.circle(mask, (138, 138), 118, 255, -1)
    return grey, mask


@pytest.fixture
def pool():
    surf_pool.start(1)
    yield
    surf_pool.stop()


@pytest.fixture
def warnings(monkeypatch, caplog):
    """The module's warnings, even after a test configured moontrek's
    logging (its handlers, on a console since closed, and no propagation)."""
    parent = logging.getLogger("moontrek")
    monkeypatch.setattr(parent, "handlers", [])
    monkeypatch.setattr(parent, "propagate", True)
    with caplog.at_level(logging.WARNING, logger="moontrek.surf_pool"):
        yield caplog


def _refuse_in_this_process(monkeypatch):
    """Make our SURF fail in this process: an answer then came from a worker."""
    def refuse(*args, **kwargs):
        raise AssertionError("described in the calling process")
    monkeypatch.setattr(SURF, "detectAndCompute", refuse)


def _worker_pids():
    return list(surf_pool._POOL._processes)


def _gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_a_worker_gives_the_calling_threads_answer(pool, canvas, monkeypatch):
    """Keypoints (every field) and descriptors from a worker equal those
    computed here, with the detector's settings (the size cap too)."""
    grey, mask = canvas
    surf = SURF(hessianThreshold=200, extended=True)
    surf.setMaxKeypointSize(40.0)
    want_kp, want_desc = surf.detectAndCompute(grey, mask)
    assert len(want_kp) > 50
    _refuse_in_this_process(monkeypatch)
    got_kp, got_desc = surf_pool.detect_and_compute(surf, grey, mask)
    assert surf_pool.running() == 1
    np.testing.assert_array_equal(keypoint_rows(got_kp), keypoint_rows(want_kp))
    np.testing.assert_array_equal(got_desc, want_desc)
    assert got_desc.dtype == np.float32 and got_desc.shape == (len(want_kp), 128)


def test_without_a_pool_the_calling_thread_describes(canvas, monkeypatch):
    """Before start(), after stop() and with start(0), nothing goes to a worker."""
    grey, mask = canvas
    surf = SURF()
    want = surf.detectAndCompute(grey, mask)
    for processes in (None, 0):
        if processes is not None:
            surf_pool.start(processes)
        assert surf_pool.running() == 0
        got = surf_pool.detect_and_compute(surf, grey, mask)
        np.testing.assert_array_equal(keypoint_rows(got[0]), keypoint_rows(want[0]))
    surf_pool.stop()


def test_opencv_detectors_stay_in_the_calling_thread(pool, canvas):
    """OpenCV's detectors release the GIL themselves: never sent to a worker."""
    grey, mask = canvas
    sift = cv2.SIFT_create()
    calls = []

    class Counting:
        def detectAndCompute(self, image, mask=None):
            calls.append(1)
            return sift.detectAndCompute(image, mask)

    keypoints, _ = surf_pool.detect_and_compute(Counting(), grey, mask)
    assert calls == [1] and len(keypoints) > 20


def test_a_killed_worker_is_replaced(pool, canvas, warnings):
    """A worker killed outright costs no answer: that call runs here, and
    the calls after it on new workers."""
    grey, mask = canvas
    surf = SURF()
    want_kp, want_desc = surf.detectAndCompute(grey, mask)
    surf_pool.detect_and_compute(surf, grey, mask)
    old = _worker_pids()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    assert _gone(old)
    got_kp, got_desc = surf_pool.detect_and_compute(surf, grey, mask)
    np.testing.assert_array_equal(keypoint_rows(got_kp), keypoint_rows(want_kp))
    np.testing.assert_array_equal(got_desc, want_desc)
    assert "died" in warnings.text
    got_kp, _ = surf_pool.detect_and_compute(surf, grey, mask)
    assert surf_pool.running() == 1 and set(_worker_pids()).isdisjoint(old)
    np.testing.assert_array_equal(keypoint_rows(got_kp), keypoint_rows(want_kp))


def test_workers_that_cannot_start_leave_surf_in_the_calling_thread(canvas, monkeypatch, warnings):
    """Where processes cannot be made (no /dev/shm for the pool's locks, a
    process limit) the server still answers SURF, in its own threads."""
    grey, mask = canvas

    def cannot(*args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(surf_pool, "ProcessPoolExecutor", cannot)
    surf_pool.start(2)
    assert surf_pool.running() == 0 and "cannot start" in warnings.text
    keypoints, _ = surf_pool.detect_and_compute(SURF(), grey, mask)
    assert len(keypoints) > 50
    surf_pool.stop()


def test_stop_ends_the_workers(canvas):
    grey, mask = canvas
    surf_pool.start(2)
    surf_pool.detect_and_compute(SURF(), grey, mask)
    pids = _worker_pids()
    assert len(pids) == 2
    surf_pool.stop()
    assert surf_pool.running() == 0
    assert _gone(pids)


def test_workers_end_when_their_server_is_killed(tmp_path):
    """A server killed outright (SIGKILL, the OOM killer) shuts no pool
    down: its workers notice and exit instead of waiting for ever."""
    script = (
        "import sys, time\n"
        "from moontrek.registration import surf_pool\n"
        "surf_pool.start(2)\n"
        "surf_pool._POOL.submit(int).result()\n"
        "print(*surf_pool._POOL._processes, flush=True)\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        pids = [int(pid) for pid in process.stdout.readline().split()]
        assert pids, "the workers did not start"
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
    assert _gone(pids)


def test_pools_that_keep_breaking_are_given_up(canvas, monkeypatch, warnings):
    """Workers that die as they start break every new pool: after a few the
    server stops making them, and answers all the while."""
    grey, mask = canvas
    made = []

    class Breaking:
        def __init__(self, *args, **kwargs):
            made.append(self)

        def submit(self, *args, **kwargs):
            from concurrent.futures.process import BrokenProcessPool

            raise BrokenProcessPool("a worker died as it started")

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(surf_pool, "ProcessPoolExecutor", Breaking)
    surf_pool.start(2)
    for _ in range(5):
        keypoints, _ = surf_pool.detect_and_compute(SURF(), grey, mask)
        assert len(keypoints) > 50
    assert surf_pool.running() == 0 and len(made) == surf_pool._MAX_BROKEN
    assert "cannot start" in warnings.text
    surf_pool.stop()
