"""Build ``resources/mnist_sample.npz``: a stratified, deterministic MNIST sample.

500 training digits per class (5,000) from the training set and 100 test
digits per class (1,000) from the test set, chosen with a fixed seed and kept
in their original order. Run from the project root::

    python resources/make_mnist_sample.py --data ../shared/data/mnist

The result is a compressed ``.npz`` of uint8 arrays (no pickle), read by
``core.data.mnist.load_mnist(source="sample")``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.data.mnist import SAMPLE_FILE, load_mnist  # noqa: E402
from core.serialize import atomic_write  # noqa: E402

SEED = 20240501


def stratified(labels, per_class: int, rng) -> np.ndarray:
    """Sorted indices of ``per_class`` samples of every class."""
    picked = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
              for c in range(10)]
    return np.sort(np.concatenate(picked))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="folder with the four MNIST IDX files")
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--out", default=str(ROOT / "resources" / SAMPLE_FILE))
    args = p.parse_args(argv)
    data = load_mnist(data_dir=args.data)
    rng = np.random.default_rng(SEED)
    tr = stratified(data.train_y, args.train_per_class, rng)
    te = stratified(data.test_y, args.test_per_class, rng)
    buf = io.BytesIO()
    np.savez_compressed(buf, train_x=data.train_x[tr], train_y=data.train_y[tr],
                        test_x=data.test_x[te], test_y=data.test_y[te],
                        train_index=tr.astype(np.int32), test_index=te.astype(np.int32))
    atomic_write(args.out, buf.getvalue())
    print(f"wrote {args.out}: {len(tr)} training and {len(te)} test digits "
          f"({len(buf.getvalue()) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
