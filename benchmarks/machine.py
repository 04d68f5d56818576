"""Is the machine quiet? The load check every benchmark prints with its figures.

The build machine is shared, and PyTorch's OpenMP threads spin while they wait:
when another process holds a core, PyTorch slows 5–15× and a ratio against it
flatters us. The 1-minute load average alone cannot tell, because it counts this
run's own threads too and lags by a minute. So :class:`LoadCheck` also counts
the CPU time that *other* processes used while it ran: the machine's busy time
from ``/proc/stat`` minus this process's own (and its waited-for children's).

    with LoadCheck() as load:
        ...                              # the timed work
    print(load.report())                 # load average before/after, others' CPU share
    print(f"ratio {r:.2f}{load.mark()}")  # tagged "[UNRELIABLE: machine busy]" unless quiet

Off Linux (no ``/proc/stat``) only the load average is reported and ``quiet``
is decided by it.
"""

from __future__ import annotations

import os
import time

# Others may use this share of all cores during a run before its ratios are called unreliable
OTHERS_LIMIT = 0.05
# A 1-minute load average above this before the run means someone else was working
LOAD_BEFORE_LIMIT = 0.3


def load_average() -> float | None:
    """The 1-minute load average, or ``None`` where the system has none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (``/proc/stat``, less idle and iowait)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    ticks = [int(v) for v in fields[1:]]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process (all threads) and of its children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadCheck:
    """Measures how busy the rest of the machine was while a block of work ran."""

    def __init__(self, cores: int | None = None):
        self.cores = cores or os.cpu_count() or 1
        self.load_before = self.load_after = None
        self.others_share = None
        self._start = None

    def __enter__(self):
        self.load_before = load_average()
        self._start = (time.perf_counter(), _machine_busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc):
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        busy, own = _machine_busy_seconds(), _own_seconds() - own0
        self.load_after = load_average()
        if busy0 is not None and busy is not None and wall > 0:
            others = max(0.0, (busy - busy0) - own)
            self.others_share = others / (wall * self.cores)
        return False

    @property
    def quiet(self) -> bool:
        """True when nothing else ran: the run's ratios can be quoted.

        The other processes' CPU share decides where it is known; the load average, which
        also counts work of ours that has just ended, decides only where it is not.
        """
        if self.others_share is not None:
            return self.others_share <= OTHERS_LIMIT
        return self.load_before is None or self.load_before <= LOAD_BEFORE_LIMIT

    def before(self) -> str:
        """The load average as the run starts, printed first so a busy start shows at once."""
        v = self.load_before
        return (f"load average (1 min) before the run: {'n/a' if v is None else f'{v:.2f}'}"
                + ("" if v is None or v <= LOAD_BEFORE_LIMIT else
                   f" (above {LOAD_BEFORE_LIMIT}: the other processes' CPU share during "
                   "the run will tell whether someone else is working)"))

    def mark(self) -> str:
        """Nothing on a quiet machine; otherwise a tag for every load-sensitive figure."""
        return "" if self.quiet else "  [UNRELIABLE: machine busy]"

    def report(self) -> str:
        """One line: load average before and after, the other processes' share, the verdict."""
        def fmt(v):
            return "n/a" if v is None else f"{v:.2f}"
        parts = [f"load average (1 min) {fmt(self.load_before)} before, "
                 f"{fmt(self.load_after)} after"]
        if self.others_share is not None:
            parts.append(f"other processes used {100 * self.others_share:.1f} % of the "
                         f"{self.cores} cores during the run")
        verdict = ("machine quiet: timings and ratios can be quoted" if self.quiet else
                   "MACHINE BUSY: timings and ratios are unreliable (and PyTorch's threads "
                   "spin under load)")
        return "; ".join(parts) + f" — {verdict}"
