"""The same checks on a real GPU through CuPy: skipped where CuPy or a CUDA device is missing.

Run them on a machine with an NVIDIA GPU (``pip install -e '.[gpu]'``) with ``pytest -m gpu``.
"""

import numpy as np
import pytest

from core.kernels.backend import cupy_module, device_status, to_device
from core.serialize import load_graph
from core.train import Trainer
from core.train.optim import OPTIMIZERS, make_optimizer
from examples import resolve

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(cupy_module() is None,
                                 reason=f"no CUDA here: {device_status()['cuda'].reason}")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_every_op_on_the_gpu_gives_the_numpy_numbers(dtype):
    """Each op's outputs and gradients on the GPU are CuPy arrays equal to NumPy's within
    rounding (the registry cases of tests/test_device_ops.py)."""
    from test_device_ops import ALL_CASES, _run  # noqa: PLC0415 - shares the cases

    cp = cupy_module()
    for op_id, k in ALL_CASES:
        o_ref, g_ref, _, _ = _run(op_id, k, dtype, lambda a: a)
        o_dev, g_dev, _, _ = _run(op_id, k, dtype, lambda a: to_device(a, "cuda"))
        for a, b in zip(o_dev + g_dev, o_ref + g_ref):
            if b is None:
                assert a is None, op_id
                continue
            assert isinstance(a, cp.ndarray), op_id
            b = np.asarray(b)
            scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
            tol = 1e-9 if dtype == np.float64 else 1e-5
            np.testing.assert_allclose(a.get(), b, rtol=tol, atol=tol * scale,
                                       err_msg=f"{op_id}[{k}]")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_lenet5_trains_on_the_gpu_like_on_the_cpu(optimizer):
    """A few LeNet-5 steps on the GPU end with the CPU's weights within float32 tolerance."""
    from test_device_train import RATES, _images, _weights  # noqa: PLC0415

    graphs = {}
    for device in ("cpu", "cuda"):
        g = load_graph(resolve("lenet5"))
        tr = Trainer(g, make_optimizer(optimizer, lr=RATES[optimizer]), batch_size=16, seed=3,
                     device=device)
        tr.fit(_images(), epochs=1, max_iterations=3)
        graphs[device] = g
    for key, w in _weights(graphs["cpu"]).items():
        np.testing.assert_allclose(_weights(graphs["cuda"])[key], w, rtol=1e-3, atol=1e-4,
                                   err_msg=f"{optimizer} {key}")
