"""The symmetries of a galaxy image, and the classes they relate.

A galaxy has no "up": its 8 dihedral views (4 rotations, each possibly mirrored) show the same
galaxy. A mirror does change one thing, the sense in which spiral arms wind, so mirrored views
swap chirality classes such as "Spiral CW" and "Spiral ACW" (:func:`chirality_pairs`), and
morphology-level figures count such a pair as one class (:func:`morphology_labels`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


def dihedral_views(images: np.ndarray) -> np.ndarray:
    """The 8 views of (..., H, W, C) images: (8, ..., H, W, C).

    View v mirrors left-right when v >= 4, then rotates by (v % 4) quarter turns; view 0 is the
    identity, views 4-7 are mirror images.
    """
    images = np.asarray(images)
    mirrored = np.flip(images, axis=-2)
    return np.stack([np.rot90(im, v % 4, axes=(-3, -2)) for v, im in
                     ((v, images if v < 4 else mirrored) for v in range(8))])


_CHIRAL = re.compile(r"\b(?:anti[- ]?clockwise|counter[- ]?clockwise|clockwise|acw|ccw|cw|[sz][- ]?wise)\b")
_ANTI = re.compile(r"\b(?:anti[- ]?clockwise|counter[- ]?clockwise|acw|ccw|z[- ]?wise)\b")


def chirality_pairs(class_names: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs of classes that are mirror images of each other, found from their names.

    Two names form a pair when they are the same apart from the winding sense ("Spiral CW" /
    "Spiral ACW", "clockwise" / "anticlockwise", "S-wise" / "Z-wise"). Galaxy10 has none.
    """
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(class_names):
        low = name.lower()
        if _CHIRAL.search(low):
            groups.setdefault(_CHIRAL.sub("<winding>", low), []).append(i)
    pairs = []
    for members in groups.values():
        if len(members) == 2:
            a, b = members
            # (plain sense, opposite sense) so pairs read the same whatever the class order
            pairs.append((b, a) if _ANTI.search(class_names[a].lower()) else (a, b))
    return sorted(pairs)


def mirror_label_map(n_classes: int, pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """(n_classes,) int64: the label a galaxy of each class has in a mirror image."""
    out = np.arange(n_classes, dtype=np.int64)
    for a, b in pairs:
        out[a], out[b] = b, a
    return out


def morphology_labels(labels: np.ndarray, pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """Labels with each chirality pair merged into one class (the pair's first member)."""
    out = np.asarray(labels, dtype=np.int64).copy()
    for a, b in pairs:
        out[out == b] = a
    return out
