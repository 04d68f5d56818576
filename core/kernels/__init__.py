"""How fast the ops run: the kernels behind ``core.ops``, and the array back end.

``core.ops`` says what each op computes (spec, shapes, formulas, samples); its
forward and backward call the kernels here, which decide how: the batch-last
layout (:mod:`~core.kernels.layout`), a small thread pool sharing parts fixed by
the shapes (:mod:`~core.kernels.threads`), reused scratch buffers
(:mod:`~core.kernels.scratch`), BLAS control (:mod:`~core.kernels.blas`), blocked
products (:mod:`~core.kernels.matmul`), im2col products with paired columns
(:mod:`~core.kernels.conv`), col2im and the shifted col2im
(:mod:`~core.kernels.col2im`), pooling with its mask (:mod:`~core.kernels.pool`), and big
elementwise ops in parts (:mod:`~core.kernels.elementwise`).
Results never depend on the thread count. The array back end
(:mod:`~core.kernels.backend`) is chosen at this seam.
"""

from core.kernels.blas import blas_kernel_hint, blas_kernels, blas_threads, own_threads
from core.kernels.threads import layer_threads

__all__ = ["blas_kernel_hint", "blas_kernels", "blas_threads", "layer_threads", "own_threads"]
