"""A minimal observer, so the graph model stays plain Python and views subscribe to it."""

from __future__ import annotations


class Event:
    """A list of callbacks called in subscription order.

    Example
    -------
    >>> e = Event()
    >>> seen = []
    >>> e.subscribe(seen.append)
    >>> e.emit(3)
    >>> seen
    [3]
    """

    __slots__ = ("_callbacks",)

    def __init__(self):
        self._callbacks = []

    def subscribe(self, callback):
        """Call ``callback(*args)`` on every :meth:`emit`; returns the callback."""
        self._callbacks.append(callback)
        return callback

    def unsubscribe(self, callback):
        """Stop calling ``callback``; unknown callbacks are ignored."""
        try:
            self._callbacks.remove(callback)
        except ValueError:
            pass

    def emit(self, *args):
        """Call every subscriber with ``args``."""
        for cb in list(self._callbacks):
            cb(*args)
