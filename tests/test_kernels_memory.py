"""Importing core lets malloc keep freed arrays' pages for the next batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.kernels import memory

resource = pytest.importorskip("resource")  # page faults are counted the Unix way

ROOT = Path(__file__).resolve().parents[1]

# a step's pattern: arrays of a few MB made and freed again and again; prints the page
# faults per round
CHURN = """
import resource, sys
if sys.argv[1] == "core":
    import core
import numpy as np

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

big = np.ones(640_000)  # freed, a 5 MB block raises glibc's own thresholds to about its size
del big
for _ in range(3):
    arrays = [np.ones(400_000) for _ in range(4)]
    del arrays
f0 = faults()
for _ in range(20):
    arrays = [np.ones(400_000) for _ in range(4)]
    del arrays
print((faults() - f0) / 20)
"""

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the thresholds are glibc's (Linux)")


def _faulted_mb_per_round(first: str, **env) -> float:
    """Megabytes faulted in per round, counted in base pages."""
    proc = subprocess.run([sys.executable, "-c", CHURN, first], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.strip()) * resource.getpagesize() / 1e6


def _huge_pages_always() -> bool:
    """Transparent huge pages for every mapping: a fault then brings in 2 MiB, not a page."""
    try:
        setting = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[always]" in setting


@glibc_only
def test_arrays_made_and_freed_every_batch_fault_no_pages_in_again():
    """With core imported, twelve megabytes made and freed twenty times over fault no pages
    in after the first time; with NumPy alone, glibc hands them back and faults them in again
    every time."""
    if not memory.keep_freed_memory():
        pytest.skip("not glibc, or the environment sets malloc's thresholds")
    assert _faulted_mb_per_round("core") < 0.5
    if not _huge_pages_always():
        assert _faulted_mb_per_round("numpy") > 8  # the 12 MB, every round


@glibc_only
def test_thresholds_the_environment_sets_are_left_alone(monkeypatch):
    """A user who sets malloc's thresholds (variables or tunables) keeps them: nothing
    changes, and the pages are handed back as they asked."""
    for name, value in (("MALLOC_TRIM_THRESHOLD_", "131072"),
                        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")):
        monkeypatch.setenv(name, value)
        assert memory.keep_freed_memory() is False
        monkeypatch.delenv(name)
    if not _huge_pages_always():
        assert _faulted_mb_per_round("core", MALLOC_TRIM_THRESHOLD_="131072") > 8
