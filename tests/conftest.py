import os
import threading
import time
from pathlib import Path

import pytest
import torch

# One torch thread (and OMP_NUM_THREADS=1 for the CLI subprocesses tests start): the tests' small models gain little
# from a second thread on an idle 2-core machine, and when anything else runs, two threads wait on each other (a
# smoke bench took 47 s with 2 threads against 19 s with 1 on this project's loaded machine).
# ROBUSTLTH_TEST_THREADS overrides.
THREADS = int(os.environ.get("ROBUSTLTH_TEST_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXACT = SHARED / "cifar10_exact_subset.npz"
JPEG = SHARED / "cifar10_jpeg.npz"

# A test (setup included) running longer than this says so on the terminal, then once a minute, and its time is
# printed when it ends: even `-q` shows which test is running. ROBUSTLTH_TEST_NOTICE_S=0 turns it off.
NOTICE_S = float(os.environ.get("ROBUSTLTH_TEST_NOTICE_S", "20"))


def _terminal_fd(config) -> int:
    """The terminal's stderr, past pytest's output capture (its saved copy of fd 2), else fd 2."""
    capman = config.pluginmanager.getplugin("capturemanager")
    err = getattr(getattr(capman, "_global_capturing", None), "err", None)
    fd = getattr(err, "targetfd_save", None)
    return fd if isinstance(fd, int) else 2


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if NOTICE_S <= 0:
        yield
        return
    fd, t0, done = _terminal_fd(item.config), time.monotonic(), threading.Event()

    def say(text: str) -> None:
        try:
            os.write(fd, text.encode())
        except OSError:
            pass

    def watch() -> None:
        wait = NOTICE_S
        while not done.wait(wait):
            say(f"\n[still running after {time.monotonic() - t0:.0f} s: {item.nodeid}]\n")
            wait = 60.0
    threading.Thread(target=watch, name="test-notice", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        elapsed = time.monotonic() - t0
        if elapsed > NOTICE_S:
            say(f"\n[{elapsed:.0f} s: {item.nodeid}]\n")


@pytest.fixture
def exact_npz():
    if not EXACT.exists():
        pytest.skip(f"{EXACT} not present")
    return EXACT


@pytest.fixture
def jpeg_npz():
    if not JPEG.exists():
        pytest.skip(f"{JPEG} not present")
    return JPEG


@pytest.fixture
def one_thread():
    """One torch thread whatever ROBUSTLTH_TEST_THREADS says: tests that time or compare steps of tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_data():
    from robustlth.config import DataConfig
    from robustlth.data import load_dataset
    return load_dataset(DataConfig(data="synthetic", n_train=1000, n_test=200))
