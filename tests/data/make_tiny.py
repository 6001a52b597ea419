"""Writes tests/data/tiny_galaxies.h5: 30 synthetic 69x69 "galaxies" (elliptical light profiles
on a flat sky, no real data) in three classes, in the Galaxy10 layout galaxy_vae writes, for
tests whose behaviour depends on the file format and the pipeline, not on what real galaxies look
like. Deterministic: `python tests/data/make_tiny.py` rewrites the same bytes' content, and a test
checks the committed file against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PATH = Path(__file__).with_name("tiny_galaxies.h5")
CLASS_NAMES = ("Round", "Elongated", "Pair")
N_PER_CLASS = 10
SIZE = 69


def tiny_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(30, 69, 69, 3) uint8 images, (30,) labels, 30 ids: round blobs, elongated ones, pairs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    images, labels = [], []
    for label in range(len(CLASS_NAMES)):
        for _ in range(N_PER_CLASS):
            angle, radius = rng.uniform(0, np.pi), rng.uniform(3, 8)
            ratio = 1.0 if label == 0 else rng.uniform(0.25, 0.5) if label == 1 else 0.8
            u = x * np.cos(angle) + y * np.sin(angle)
            v = (-x * np.sin(angle) + y * np.cos(angle)) / ratio
            light = np.exp(-np.hypot(u, v) / radius * 1.7)
            if label == 2:  # a companion to one side
                light += 0.6 * np.exp(-np.hypot(u - 3 * radius, v) / radius * 2.5)
            colour = rng.uniform(0.6, 1.0, 3)
            image = 200 * light[..., None] * colour + 12
            images.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
            labels.append(label)
    ids = [f"tiny{i:03d}" for i in range(len(images))]
    return np.stack(images), np.asarray(labels, dtype=np.int64), ids


def write(path: Path = PATH) -> Path:
    """The fixture file: galaxy_vae's layout (images, ans, ids, class_names, source), gzip-compressed
    so that it stays a few kB in git."""
    import h5py

    images, labels, ids = tiny_images()
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, compression="gzip", compression_opts=9, shuffle=True)
        f.create_dataset("ans", data=labels.astype(np.uint8))
        f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
        f.attrs["class_names"] = np.asarray(CLASS_NAMES, dtype=object)
        f.attrs["source"] = "synthetic test galaxies (tests/data/make_tiny.py)"
    return path


if __name__ == "__main__":
    print(f"wrote {write()} ({PATH.stat().st_size:,} bytes)")
