"""Plotly figures for the pages: the latent map, the interpolation path, training curves, the
confusion matrix. Pure functions: arrays in, a ``go.Figure`` out; pixels and image bytes live in
:mod:`galaxy_vae.raster`, no streamlit here. The latent map's contract with
the pages: every galaxy point carries its global row in ``customdata`` (Plotly's point indices are
per trace). Neighbour rings carry the rows they cover (a click on a ring selects its galaxy); the
query star, which may mark an uploaded picture, carries none, so :func:`selected_rows` ignores it.

The maps are built for speed at Galaxy10 size (21,785 points): WebGL traces assembled as plain
dicts (no per-property validation), numpy arrays passed straight through (Plotly writes them as
base64 typed arrays), one hovertemplate per trace instead of a formatted string per point. The
main map has one trace per class (a legend to toggle classes); the small maps redrawn on every
generator slider move use a single class-coloured trace over a fixed subset of galaxies, because
Plotly's cost per trace, not per point, dominates there.

Above LARGE_MAP galaxies (survey scale: 240,000 is Galaxy Zoo 2) a WebGL point per galaxy is too
heavy for the browser: each draw of 240,000 points costs chromium ~1.2 s on a CPU, and a page load
or a click draws the map twice. The pages then pass :class:`MapLayers`, built once per catalogue:
every galaxy counted into a class-coloured density image (:func:`raster.density_map`) drawn under
the points, and as points only one galaxy per cell of a fine grid (:func:`generate.cell_sample_rows`:
~4,000 at 240,000), compact (float32 coordinates, int32 rows, no per-point text). Each point is
still one exact galaxy: a click selects its row; neighbours, rings and box or lasso selections use
every galaxy of the catalogue, drawn as points or not.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from galaxy_vae.raster import NEIGHBOUR_COLOR, PALETTE, QUERY_COLOR, class_colors, data_uri

GALAXY_META = "galaxies"  # trace.meta of selectable galaxy traces; others are markers only
LARGE_MAP = 50_000  # galaxies above which the main map is a density image with one point per cell
MAP_CELLS = 128  # a large map's grid: at most MAP_CELLS**2 points, a cell ~4 px on the page
MARGIN = dict(l=10, r=10, t=30, b=10)


@dataclass(frozen=True)
class MapLayers:
    """A large map's galaxies, built once per catalogue (:func:`large_map_layers`); every rerun of a
    map page reuses them, and nothing mutates them."""

    traces: list[dict]  # one compact selectable trace per class over the representatives
    density: str  # data URI of the density image of every galaxy (raster.density_map)
    extent: tuple[float, float, float, float]  # (x0, x1, y0, y1) the density image covers
    shown: int  # galaxies drawn as points
    total: int  # galaxies in the catalogue


def plain(texts: np.ndarray) -> np.ndarray:
    """Ids or names from a dataset as Plotly shows them: its labels read a subset of HTML (<b>,
    <a href>), so text with markup characters is escaped; ordinary ids pass without a copy."""
    texts = np.asarray(texts, dtype=str)
    if not (np.char.find(texts, "<") >= 0).any() and not (np.char.find(texts, "&") >= 0).any():  # the usual case
        return texts
    return np.array([html.escape(t, quote=False) for t in texts])


def _class_traces(xy: np.ndarray, labels: np.ndarray, rows: np.ndarray, class_names: Sequence[str],
                  text: np.ndarray | None, size: float, opacity: float) -> list[dict]:
    """One selectable WebGL trace per non-empty class of the points ``xy`` (M, 2) with ``labels``
    (M,) and global ``rows`` (M,) as customdata; ``text`` (M,) ids for the hover, or None."""
    colors = class_colors(class_names)
    traces = []
    for c, name in enumerate(class_names):
        at = np.flatnonzero(labels == c)
        if not len(at):
            continue
        colour, name = colors[name], html.escape(name, quote=False)
        hover = ("" if text is None else "%{text}<br>") + f"{name}<br>row %{{customdata}}<extra></extra>"
        trace = dict(type="scattergl", x=xy[at, 0], y=xy[at, 1], mode="markers", name=name, legendgroup=name,
                     customdata=rows[at], meta=GALAXY_META, hovertemplate=hover,
                     marker=dict(size=size, color=colour, opacity=opacity, line=dict(width=0)))
        if text is not None:
            trace["text"] = text[at]
        traces.append(trace)
    return traces


def _galaxy_traces(latents: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                   ids: np.ndarray, size: float, opacity: float) -> list[dict]:
    """Every galaxy, one selectable WebGL trace per non-empty class; customdata = global row (int64)."""
    return _class_traces(latents, labels, np.arange(len(latents)), class_names, plain(ids), size, opacity)


def compact_galaxy_traces(latents: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                          rows: np.ndarray | None = None, size: float = 4, opacity: float = 0.75) -> list[dict]:
    """The galaxies ``rows`` (all when None) as :func:`_galaxy_traces` draws them, one selectable
    WebGL trace per non-empty class, but compact: x and y float32 (Plotly's typed arrays, 4 bytes a
    value), customdata int32 global rows, no per-point text (the hover names class and row)."""
    rows = np.arange(len(latents)) if rows is None else np.asarray(rows)
    xy, labels = np.asarray(latents, dtype=np.float32)[rows], np.asarray(labels)[rows]  # (M, 2), (M,)
    return _class_traces(xy, labels, rows.astype(np.int32), class_names, None, size, opacity)


def large_map_layers(latents: np.ndarray, labels: np.ndarray, class_names: Sequence[str], rows: np.ndarray,
                     density: str, extent: Sequence[float]) -> MapLayers:
    """:class:`MapLayers` of a large map: ``rows`` (the galaxies drawn as points, e.g.
    :func:`generate.cell_sample_rows` over a MAP_CELLS grid) and the ``density`` image over ``extent``."""
    traces = compact_galaxy_traces(latents, labels, class_names, rows, size=3, opacity=0.8)
    return MapLayers(traces, density, tuple(float(v) for v in extent), len(rows), len(latents))


def _background_trace(latents: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                      rows: np.ndarray, size: float, opacity: float) -> dict:
    """All ``rows`` in one WebGL trace, coloured by class through a stepped colour scale.

    One trace instead of one per class: Plotly's per-trace cost (~2 ms each on serialisation)
    dominates small maps that are redrawn on every slider move. Still selectable (customdata).
    """
    colors = list(class_colors(class_names).values())
    n = len(colors)
    # class c -> the constant band [c/n, (c+1)/n] of the scale, with cmin/cmax centring c in it
    scale = [[edge / n, colors[c]] for c in range(n) for edge in (c, c + 1)]
    return dict(type="scattergl", x=latents[rows, 0], y=latents[rows, 1], mode="markers", name="galaxies",
                customdata=rows, meta=GALAXY_META, hovertemplate="row %{customdata}<extra></extra>",
                marker=dict(size=size, color=labels[rows], colorscale=scale, cmin=-0.5, cmax=n - 0.5,
                            opacity=opacity, line=dict(width=0)))


def _marker_trace(points: np.ndarray, name: str, symbol: str, size: float, color: str,
                  hover: Sequence[str], rows: np.ndarray | None = None) -> dict:
    """A highlight trace (query, neighbours, path). With ``rows`` (the galaxies it rings) a click on
    a marker selects that galaxy, since the marker covers it; without, it is never a selectable row."""
    points = np.atleast_2d(points)
    # scattergl draws open symbols only with an explicit line width
    trace = dict(type="scattergl", x=points[:, 0], y=points[:, 1], mode="markers", name=name, meta=name,
                 hovertext=list(hover), hovertemplate="%{hovertext}<extra></extra>",
                 marker=dict(symbol=symbol, size=size, color=color, line=dict(width=2, color=color)))
    if rows is not None:
        trace["customdata"] = np.asarray(rows, dtype=np.int64)
    return trace


def _map_figure(traces: list[dict], height: int, title: str | None, axis_names: Sequence[str],
                showlegend: bool = True) -> go.Figure:
    """Assemble a map from plain trace dicts without Plotly's per-property validation.

    Validation costs ~40 ms at 21,785 points and finds nothing here: the dicts are fixed by this
    module, and tests re-validate every figure (``go.Figure(fig.to_dict())``).
    """
    layout = dict(
        height=height, margin=MARGIN, title=dict(text=title) if title else None, showlegend=showlegend,
        uirevision="keep",  # keep the user's zoom across reruns
        legend=dict(itemsizing="constant", orientation="h", y=-0.08), hovermode="closest",
        xaxis=dict(title=dict(text=axis_names[0]), zeroline=False),
        yaxis=dict(title=dict(text=axis_names[1]), zeroline=False, scaleanchor="x", scaleratio=1))
    return go.Figure(data=traces, layout={k: v for k, v in layout.items() if v is not None}, _validate=False)


def _subsample(n: int, max_points: int | None) -> np.ndarray:
    """Sorted rows of a fixed random subset of size max_points (same on every rerun), or all rows."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=max_points, replace=False))


def latent_map(latents: np.ndarray, labels: np.ndarray, class_names: Sequence[str], ids: np.ndarray, *,
               query: np.ndarray | None = None, neighbours: np.ndarray | None = None,
               background: tuple[np.ndarray | str, Sequence[float]] | None = None,
               background_opacity: float = 0.35, height: int = 600, point_size: float = 4,
               title: str | None = None, axis_names: Sequence[str] = ("z₁", "z₂"),
               outline: Sequence[Sequence[float]] | None = None, marked: np.ndarray | None = None,
               marked_name: str = "marked", layers: MapLayers | None = None) -> go.Figure:
    """The map of every galaxy's latent mean: (N, 2) latents -> a WebGL scatter, one trace per class.

    ``query``: a (2,) point drawn as a gold star; ``neighbours``: (k,) row indices ringed, nearest
    first (hover gives the rank). ``background``: (mosaic uint8 (H, W, 3) or its
    :func:`raster.data_uri`, extent (x0, x1, y0, y1)) drawn faintly under the points; pass the
    cached data URI on reruns to skip encoding. ``outline``: the (V, 2) vertices of a selection,
    drawn closed; ``marked``: rows drawn as open squares (e.g. the most unusual galaxies).
    ``layers``: a large catalogue's :class:`MapLayers` (density image, one point per cell), built
    once by the page's cache; without them a map above LARGE_MAP galaxies draws every galaxy as a
    compact point (:func:`compact_galaxy_traces`).
    """
    latents = np.asarray(latents)
    assert latents.ndim == 2 and latents.shape[1] == 2, latents.shape
    ids = np.asarray(ids)
    if layers is not None:
        traces = list(layers.traces)
    elif len(latents) > LARGE_MAP:
        traces = compact_galaxy_traces(latents, np.asarray(labels), class_names, size=point_size)
    else:
        traces = _galaxy_traces(latents, np.asarray(labels), class_names, ids, point_size, 0.75)
    if neighbours is not None and len(neighbours):
        rows = np.asarray(neighbours, dtype=np.int64)
        hover = [f"neighbour {r}: {html.escape(str(ids[i]))}" for r, i in enumerate(rows, start=1)]
        traces.append(_marker_trace(latents[rows], "neighbours", "circle-open", point_size + 9,
                                    NEIGHBOUR_COLOR, hover, rows=rows))
    if marked is not None and len(marked):
        rows = np.asarray(marked, dtype=np.int64)
        traces.append(_marker_trace(latents[rows], marked_name, "square-open", point_size + 7, "#FFFFFF",
                                    [f"{marked_name} {r}: {html.escape(str(ids[i]))}" for r, i in enumerate(rows, 1)],
                                    rows=rows))
    if outline is not None and len(outline) >= 2:
        ring = np.vstack([np.asarray(outline, dtype=float), np.asarray(outline, dtype=float)[:1]])  # closed
        traces.append(dict(type="scattergl", x=ring[:, 0], y=ring[:, 1], mode="lines", name="selection",
                           meta="selection", hoverinfo="skip", line=dict(color=QUERY_COLOR, width=1.5, dash="dash")))
    if query is not None:
        traces.append(_marker_trace(np.asarray(query, dtype=float).reshape(1, 2), "query", "star",
                                    point_size + 14, QUERY_COLOR, ["query"]))
    fig = _map_figure(traces, height, title, axis_names)
    if background is not None:
        add_background(fig, *background, opacity=background_opacity)
    if layers is not None:  # over the background, under the points
        add_background(fig, layers.density, layers.extent, opacity=1.0)
    return fig


def add_background(fig: go.Figure, image: np.ndarray | str, extent: Sequence[float],
                   opacity: float = 0.35) -> go.Figure:
    """Stretch an image over data coordinates extent = (x0, x1, y0, y1), beneath the points."""
    x0, x1, y0, y1 = (float(v) for v in extent)
    source = image if isinstance(image, str) else data_uri(image)
    fig.add_layout_image(source=source, xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0,
                         xanchor="left", yanchor="top", sizing="stretch", opacity=opacity, layer="below")
    return fig


def selected_rows(selection: Mapping | None) -> list[int]:
    """Dataset rows of the galaxy points in a Streamlit plotly selection (``event.selection``).

    Points without customdata (query star, paths) are ignored; order is kept and
    duplicates dropped.
    """
    rows: list[int] = []
    for point in (selection or {}).get("points", []):
        value = point.get("customdata")
        if isinstance(value, (list, tuple)):  # some Plotly versions wrap scalars in a list
            value = value[0] if value else None
        if value is not None and int(value) not in rows:
            rows.append(int(value))
    return rows


def interpolation_path(latents: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                       path: np.ndarray, nearest: np.ndarray, *, height: int = 360,
                       max_points: int | None = 4000, title: str | None = None,
                       axis_names: tuple[str, str] = ("z₁", "z₂")) -> go.Figure:
    """A compact map with an interpolation path (T, 2) drawn step by step, and dotted links from
    each step to the nearest real galaxy (T, 2). At most ``max_points`` faint galaxies (a fixed
    subset) in one class-coloured trace: cheap enough to redraw on every change of the path."""
    latents, path, nearest = np.asarray(latents), np.asarray(path, dtype=float), np.asarray(nearest, dtype=float)
    assert path.ndim == 2 and path.shape == nearest.shape and path.shape[1] == 2, (path.shape, nearest.shape)
    traces = [_background_trace(latents, np.asarray(labels), class_names,
                                _subsample(len(latents), max_points), 3, 0.35)]
    # links as one trace: segments separated by NaN gaps, (T, 3, 2) -> (3T, 2)
    links = np.stack([path, nearest, np.full_like(path, np.nan)], axis=1).reshape(-1, 2)
    traces.append(dict(type="scattergl", x=links[:, 0], y=links[:, 1], mode="lines", name="to nearest",
                       meta="links", hoverinfo="skip", line=dict(color=NEIGHBOUR_COLOR, width=1, dash="dot")))
    steps = [f"step {t}" for t in range(len(path))]
    traces.append(_marker_trace(nearest, "nearest galaxies", "circle-open", 12, NEIGHBOUR_COLOR,
                                [f"nearest to {s}" for s in steps]))
    traces.append(dict(type="scattergl", x=path[:, 0], y=path[:, 1], mode="lines+markers", name="path",
                       meta="path", hovertext=steps, hovertemplate="%{hovertext}<extra></extra>",
                       line=dict(color=QUERY_COLOR, width=2), marker=dict(size=8, color=QUERY_COLOR)))
    return _map_figure(traces, height, title, axis_names, showlegend=False)


TERM_ORDER = ("loss", "recon", "kl", "kl detail", "class")


def _history_terms(history: Mapping) -> list[str]:
    """Loss terms present in any epoch of any split, known ones first."""
    seen: list[str] = []
    for rows in history.values():
        for row in rows or []:
            for key, value in row.items():
                if key != "epoch" and key not in seen and isinstance(value, (int, float)):
                    seen.append(key)
    return [t for t in TERM_ORDER if t in seen] + [t for t in seen if t not in TERM_ORDER]


def _finite_or_none(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def loss_curves(history: Mapping, *, height: int = 300) -> go.Figure:
    """Training history {"train": [{"epoch", "loss", "recon", "kl", "class"}, ...], "val": [...]} ->
    one panel per loss term, train solid and validation dashed. Missing terms leave gaps."""
    history = history or {}
    terms = _history_terms(history)
    if not terms:
        fig = go.Figure()
        fig.add_annotation(text="No training history recorded", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        return fig.update_layout(height=height, margin=MARGIN, xaxis_visible=False, yaxis_visible=False)
    fig = make_subplots(rows=1, cols=len(terms), subplot_titles=terms, horizontal_spacing=0.06)
    styles = {"train": dict(color=PALETTE[4], dash="solid"), "val": dict(color=PALETTE[1], dash="dash")}
    for split, rows in history.items():
        rows = list(rows or [])
        if not rows:
            continue
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(rows)]
        for col, term in enumerate(terms, start=1):
            fig.add_trace(go.Scatter(
                x=epochs, y=[_finite_or_none(row.get(term)) for row in rows], mode="lines+markers",
                name=split, legendgroup=split, showlegend=col == 1, line=styles.get(split, {}),
                marker=dict(size=4), hovertemplate=f"{split} {term}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"),
                row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    return fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10))


def confusion_matrix_figure(cm: np.ndarray, class_names: Sequence[str], *, height: int = 420,
                            title: str | None = None) -> go.Figure:
    """Counts (C, C), rows = true class, columns = predicted -> heatmap coloured by row fraction."""
    cm = np.asarray(cm)
    assert cm.ndim == 2 and cm.shape == (len(class_names), len(class_names)), (cm.shape, class_names)
    totals = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, totals, out=np.zeros(cm.shape, dtype=float), where=totals > 0)
    names = list(class_names)
    fig = go.Figure(go.Heatmap(
        z=frac, x=names, y=names, text=cm, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
        colorbar=dict(title=dict(text="row share")),
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text} galaxies (%{z:.0%} of the row)<extra></extra>"))
    fig.update_layout(height=height, margin=MARGIN, title=title,
                      xaxis=dict(title=dict(text="predicted")),
                      yaxis=dict(title=dict(text="true"), autorange="reversed"))
    return fig


REALISM_SETS = {"real": ("real galaxies", "#888888"), "reconstructions": ("reconstructions", "#1f77b4"),
                "samples": ("samples", "#d62728")}


def realism_histograms(values: Mapping[str, Mapping[str, np.ndarray]], stats: Sequence[str], *,
                       height: int = 320) -> go.Figure:
    """One panel per statmorph statistic: normalised histograms of real galaxies, reconstructions and
    samples overlaid (``values``: {set: {stat: usable values}}, :func:`realism.histogram_values`)."""
    fig = make_subplots(rows=1, cols=len(stats), subplot_titles=list(stats))
    for col, stat in enumerate(stats, 1):
        for key, (name, color) in REALISM_SETS.items():
            if key not in values or not len(values[key][stat]):
                continue
            fig.add_trace(go.Histogram(x=values[key][stat], name=name, legendgroup=key, showlegend=col == 1,
                                       histnorm="probability density", opacity=0.55, marker_color=color,
                                       nbinsx=20), row=1, col=col)
    fig.update_layout(barmode="overlay", height=height, margin=MARGIN, legend=dict(orientation="h", y=-0.15))
    return fig
