"""Pure NumPy core of Backprop Studio. Never imports Qt.

Importing ``core`` before NumPy holds NumPy's BLAS (OpenBLAS) to one thread
unless ``OPENBLAS_NUM_THREADS`` says otherwise: the layer ops share their work
between cores themselves (``core.kernels``), and idle OpenBLAS threads spin
for a while after each product, taking the cores that work needs. Products
large enough to want several threads are split by ``core.kernels`` too.

It also lets malloc keep freed arrays' memory for the next batch
(:func:`core.kernels.memory.keep_freed_memory`): a step that gets fresh pages from the
system for its arrays pays a page fault for every one of them, every batch.
"""

import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from core.kernels.memory import keep_freed_memory as _keep_freed_memory  # noqa: E402

_keep_freed_memory()
