"""Shared test set-up: Qt runs offscreen; MNIST comes from ../shared when present."""

import contextlib
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


@contextlib.contextmanager
def held_threads(n):
    """The layer pool held to ``n`` threads while the block runs."""
    from core.kernels import threads

    old = threads.set_layer_threads(n)
    try:
        yield n
    finally:
        threads.set_layer_threads(old)


def on_both_threads(real):
    """``real`` wrapped for a two-thread test, and the set of thread names that called it.

    With two layer threads a call waits (two seconds at most) until a second thread has
    made one, so both threads run parts however busy the machine is.
    """
    import threading

    from core.kernels import threads

    ran_on, both = set(), threading.Event()

    def spy(*args):
        ran_on.add(threading.current_thread().name)
        if len(ran_on) > 1:
            both.set()
        if threads._WORKERS > 1:
            both.wait(2.0)
        return real(*args)

    return spy, ran_on
