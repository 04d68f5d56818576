"""Mini-batches, splits, normalization, augmentation and k-fold indices."""

import numpy as np
import pytest

from core.data.datasets import (
    ArrayDataset,
    Augment,
    Normalizer,
    kfold_indices,
    random_rotation,
    random_shift,
    train_val_split,
)
from core.errors import DataError


def _ds(n=103, classes=4):
    return ArrayDataset(np.arange(n * 2, dtype=np.float32).reshape(n, 2),
                        np.arange(n) % classes)


def test_batches_cover_every_sample_once_in_a_seeded_order():
    ds = _ds()
    a = np.concatenate([y for _, y in ds.batches(10, seed=[0, 1])])
    b = np.concatenate([x[:, 0] for x, _ in ds.batches(10, seed=[0, 1])])
    c = np.concatenate([x[:, 0] for x, _ in ds.batches(10, seed=[0, 2])])
    assert sorted(b.tolist()) == list(range(0, 206, 2))
    assert len(a) == 103 and not np.array_equal(b, c)
    assert np.array_equal(b, np.concatenate([x[:, 0] for x, _ in ds.batches(10, seed=[0, 1])]))


def test_unshuffled_batches_keep_order_and_drop_last():
    ds = _ds(10)
    sizes = [len(y) for _, y in ds.batches(4, shuffle=False, drop_last=True)]
    assert sizes == [4, 4] and ds.batch_count(4) == 3 and ds.batch_count(4, True) == 2


def test_split_is_stratified_disjoint_and_seeded():
    ds = _ds(400)
    tr, val = train_val_split(ds, 0.25, seed=3)
    assert len(tr) == 300 and len(val) == 100
    assert np.bincount(val.y).tolist() == [25, 25, 25, 25]
    assert not set(tr.x[:, 0].tolist()) & set(val.x[:, 0].tolist())
    tr2, val2 = train_val_split(ds, 0.25, seed=3)
    assert np.array_equal(val.x, val2.x)
    assert train_val_split(ds, 0.0)[1] is None
    with pytest.raises(DataError):
        train_val_split(ds, 1.0)


def test_normalizer_uses_training_statistics_only():
    train = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    norm = Normalizer.fit(train, scale=1 / 255)
    assert norm.mean == pytest.approx(0.5) and norm.std == pytest.approx(0.5)
    test = np.array([[255, 255]], dtype=np.uint8)  # different statistics: not refitted
    out = norm.apply(test)
    assert out.dtype == np.float32 and out.tolist() == [[1.0, 1.0]]
    assert Normalizer.from_dict(norm.to_dict()).apply(train).tolist() == [[-1, 1], [1, -1]]


def test_normalizer_rejects_constant_data():
    with pytest.raises(DataError, match="zero variance"):
        Normalizer.fit(np.ones((3, 4)))


def test_shift_moves_a_pixel_and_fills_the_border():
    img = np.zeros((1, 5, 5), np.float32)
    img[0, 2, 2] = 1.0

    class FixedRng:
        def integers(self, lo, hi, n):
            return np.full(n, 1)

    out = random_shift(img, 2, FixedRng(), fill=-0.5)
    assert out[0, 3, 3] == 1.0 and out[0, 0, 0] == -0.5 and out.sum() == pytest.approx(
        1.0 - 0.5 * 9)


def test_rotation_by_zero_degrees_is_identity_and_90_degrees_by_hand():
    rng = np.random.default_rng(0)
    img = rng.random((2, 1, 6, 6))
    assert np.allclose(random_rotation(img, 1e-9, rng), img, atol=1e-6)

    class Quarter:
        def uniform(self, lo, hi, n):
            return np.full(n, 90.0)

    out = random_rotation(img, 90.0, Quarter())
    # +90° turns clockwise on screen (rows grow downwards): np.rot90 with k = −1
    assert np.allclose(out, np.rot90(img, k=-1, axes=(2, 3)), atol=1e-9)


def test_augment_keeps_shape_dtype_and_mass_roughly():
    rng = np.random.default_rng(1)
    imgs = np.zeros((8, 28, 28), np.float32)
    imgs[:, 10:18, 10:18] = 1.0
    out = Augment(shift=2, rotation=10)(imgs, rng)
    assert out.shape == imgs.shape and out.dtype == np.float32
    assert np.all(np.abs(out.sum(axis=(1, 2)) - 64) < 8)
    assert not np.array_equal(out, imgs)


def test_kfold_partitions_and_stratifies():
    labels = np.repeat(np.arange(3), 20)
    folds = kfold_indices(60, 5, seed=0, labels=labels)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(60))
    for tr, te in folds:
        assert len(te) == 12 and not set(tr) & set(te)
        assert np.bincount(labels[te]).tolist() == [4, 4, 4]
    with pytest.raises(DataError):
        kfold_indices(5, 1)
