"""Data sets that fastmlp can make or read without downloading anything."""

import numpy as np

SHAPE_CLASSES = ("ring", "square")


def make_shapes(n_samples=20000, size=20, noise=0.2, seed=0, dtype=np.float32):
    """Noisy ``size`` x ``size`` images of two shape classes: rings (label 0) and squares (label 1).

    Each image holds one outline of random centre and radius, blurred edges, random
    brightness and Gaussian pixel noise. Returns ``X`` of shape (n_samples, size*size)
    and integer labels ``y`` of shape (n_samples,), classes balanced at random.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    centre = rng.uniform(0.35 * size, 0.65 * size, (n_samples, 2, 1, 1))
    radius = rng.uniform(0.15 * size, 0.3 * size, (n_samples, 1, 1))
    brightness = rng.uniform(0.6, 1.0, (n_samples, 1, 1))
    rows, cols = np.mgrid[0:size, 0:size]
    dy = rows[None] - centre[:, 0]
    dx = cols[None] - centre[:, 1]
    ring = np.hypot(dx, dy)
    square = np.maximum(np.abs(dx), np.abs(dy))
    distance = np.where(labels[:, None, None] == 0, ring, square)
    images = brightness * np.clip(1.0 - np.abs(distance - radius), 0.0, 1.0)
    images += rng.normal(0.0, noise, images.shape)
    return images.reshape(n_samples, size * size).astype(dtype), labels.astype(np.int64)
