"""Data sets: MNIST and friends, batching, splits."""
