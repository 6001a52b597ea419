"""Regions of the map: the galaxies inside a drawn box or lasso, what a selection holds, and the
shape as a short text for links.

A selection is its shape, not a list of rows: the galaxies inside it are recomputed from the map
coordinates (:func:`rows_inside`), so the ids shown are exactly those inside the drawn shape,
whatever Plotly reports per trace, and a link carries a few numbers instead of thousands of ids.

    box    "box:x0,x1,y0,y1"          the rectangle between x0..x1 and y0..y1 (either order)
    lasso  "lasso:x1,y1,x2,y2,..."    a closed polygon (at least 3 vertices)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from galaxy_vae.data import GalaxyData

MAX_VERTICES = 200  # a lasso is simplified to at most this many vertices (links stay short)
PAGE_SIZE = 24  # galaxies per page of a selection's gallery


@dataclass(frozen=True)
class Shape:
    kind: str  # "box" or "lasso"
    points: tuple[tuple[float, float], ...]  # box: the two corners; lasso: the vertices

    def vertices(self) -> np.ndarray:
        """(V, 2) corners of the shape in order, for drawing it."""
        if self.kind == "box":
            (x0, y0), (x1, y1) = self.points
            return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=float)
        return np.asarray(self.points, dtype=float)

    def to_text(self) -> str:
        """The shape as a link parameter ("box:..." / "lasso:...", 4 significant digits)."""
        if self.kind == "box":
            (x0, y0), (x1, y1) = self.points
            values = (x0, x1, y0, y1)
        else:
            values = tuple(v for p in self.points for v in p)
        return f"{self.kind}:" + ",".join(f"{v:.4g}" for v in values)


def parse(text: str | None) -> Shape | None:
    """A Shape from :meth:`Shape.to_text`'s form; None for anything else (never raises)."""
    if not text or ":" not in text:
        return None
    kind, _, rest = str(text).partition(":")
    try:
        values = [float(v) for v in rest.split(",")]
    except ValueError:
        return None
    if not values or not all(math.isfinite(v) for v in values):
        return None
    if kind == "box" and len(values) == 4:
        x0, x1, y0, y1 = values
        return Shape("box", ((x0, y0), (x1, y1)))
    if kind == "lasso" and len(values) >= 6 and len(values) % 2 == 0:
        return Shape("lasso", tuple(zip(values[::2], values[1::2])))
    return None


def from_plotly(selection: Mapping | None) -> Shape | None:
    """The box or lasso of a Streamlit Plotly selection (``event.selection``), None if it has none."""
    selection = selection or {}
    for box in selection.get("box") or []:
        xs, ys = box.get("x") or [], box.get("y") or []
        if len(xs) == 2 and len(ys) == 2:
            return Shape("box", ((float(xs[0]), float(ys[0])), (float(xs[1]), float(ys[1]))))
    for lasso in selection.get("lasso") or []:
        xs, ys = lasso.get("x") or [], lasso.get("y") or []
        if len(xs) >= 3 and len(xs) == len(ys):
            step = max(1, math.ceil(len(xs) / MAX_VERTICES))
            return Shape("lasso", tuple((float(x), float(y)) for x, y in zip(xs[::step], ys[::step])))
    return None


def rows_inside(xy: np.ndarray, shape: Shape) -> np.ndarray:
    """Sorted rows of the (N, 2) map points inside ``shape`` (edges included for a box)."""
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    if shape.kind == "box":
        (x0, y0), (x1, y1) = shape.points
        inside = (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))
        return np.flatnonzero(inside)
    poly = np.asarray(shape.points, dtype=np.float64)  # (V, 2), closed implicitly
    inside = np.zeros(len(xy), dtype=bool)
    for (xa, ya), (xb, yb) in zip(poly, np.roll(poly, -1, axis=0)):  # even-odd rule, one edge at a time
        crosses = (ya > y) != (yb > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = xa + (y - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (x < at)
    return np.flatnonzero(inside)


def class_counts(data: GalaxyData, rows: Sequence[int]) -> list[dict]:
    """Per class: galaxies in the selection and in the whole catalogue, with their shares."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(data.class_names)
    inside = np.bincount(data.labels[rows], minlength=n)
    whole = np.bincount(data.labels, minlength=n)
    return [{"class": name, "selected": int(inside[c]), "share of selection": inside[c] / max(len(rows), 1),
             "catalogue": int(whole[c]), "share of catalogue": whole[c] / max(len(data), 1)}
            for c, name in enumerate(data.class_names)]


def selection_rows(data: GalaxyData, rows: Sequence[int], xy: np.ndarray) -> list[dict]:
    """The selection as CSV-ready rows: index, id, label, class_name, map x and y."""
    return [{"index": int(r), "id": str(data.ids[r]), "label": int(data.labels[r]),
             "class_name": data.class_names[data.labels[r]], "x": float(xy[r, 0]), "y": float(xy[r, 1])}
            for r in np.asarray(rows, dtype=np.int64)]


def page(rows: Sequence[int], number: int, size: int = PAGE_SIZE) -> tuple[np.ndarray, int]:
    """Page ``number`` (from 1, clipped to the range) of ``rows`` and the number of pages."""
    rows = np.asarray(rows, dtype=np.int64)
    pages = max(1, math.ceil(len(rows) / size))
    number = min(max(int(number), 1), pages)
    return rows[(number - 1) * size:number * size], pages
