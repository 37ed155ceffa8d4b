"""The server's malloc settings (moontrek.app.tune_malloc) keep a
registration's working set resident from one request to the next."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import shared_data
from tests.servers import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings: Linux only")

# Registers the pair several times on a thread that is not the main one (as
# a waitress worker does, with OpenCV on one thread as the server runs it)
# and prints each registration's minor page faults.
PROBE = textwrap.dedent(
    """
    import json, resource, sys, threading
    import cv2
    from moontrek.app import M_ARENA_MAX, tune_malloc
    from moontrek.registration import register

    if sys.argv[1] == "server":
        tune_malloc()
    else:  # what moontrek did before: the arena cap alone
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)
    cv2.setNumThreads(1)
    user, model = (open(path, "rb").read() for path in sys.argv[2:4])
    faults = []

    def work():
        for _ in range(6):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            register(user, model, "SIFT", reduced_decode=True)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    print(json.dumps(faults))
    """
)


def _faults(mode, user, model):
    run = subprocess.run([sys.executable, "-c", PROBE, mode, str(user), str(model)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(run.stdout)


def test_a_request_does_not_fault_its_working_set_in_again():
    """With the arena cap alone a demo request (a 2000 x 2000 render) was
    handed back to the kernel after each registration and faulted in again
    by the next: ~5,000 page faults (20 MB) a request, every request. With
    tune_malloc's thresholds the registrations after the first two fault
    almost nothing in."""
    user, model = shared_data("registrate", "02-userImage.png"), shared_data("registrate", "02-modelImage.png")
    tuned = _faults("server", user, model)
    steady = tuned[2:]
    assert max(steady) < 500, (tuned, "arena cap alone:", _faults("capped", user, model))
