"""What pages show and take: galleries of galaxies, uploads prepared like the catalogue, a query's
summary, and the guard that keeps tracebacks off the page."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from galaxy_vae import generate, selection
from galaxy_vae.app.cache import Session, stamp
from galaxy_vae.captions import error_text, galaxy_caption, join_notes, neighbour_captions, outlier_message
from galaxy_vae.catalogue import Catalogue, Query
from galaxy_vae.cutouts import PreparedImage, prepare_upload
from galaxy_vae.data import model_view
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.images import UPLOAD_EXTENSIONS
from galaxy_vae.raster import display_scale, png_bytes, upscale
from galaxy_vae.search import neighbour_table

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong on this page"  # the guard's message (tests look for it)


# --- widgets shared by pages --------------------------------------------------------------------

def gallery(images: Sequence[np.ndarray | bytes], captions: Sequence[str], columns: int = 6, scale: int = 2) -> None:
    """Thumbnails in a grid, crisply upscaled (nearest neighbour), each with its caption as alt text.
    ``images``: uint8 arrays, or PNG files already encoded (shown as they are)."""
    cols = st.columns(columns)
    for i, (img, caption) in enumerate(zip(images, captions)):
        if isinstance(img, bytes):
            cols[i % columns].image(img, caption=caption, alt=caption, output_format="PNG")
        else:
            cols[i % columns].image(upscale(img, scale), caption=caption, alt=caption)


def decoded_beside_nearest(session: Session, point, caption: str, columns: list) -> tuple[bytes, int]:
    """A decoded latent point (``generate.LatentPoints`` of one) as crisp PNG in ``columns[0]``, its
    nearest real galaxy under the session's similarity in ``columns[1]``; returns the PNG (for a
    download button) and that galaxy's row."""
    cat, data, sim = session.catalogue, session.data, session.similarity
    decoded = point.decode(cat)
    rows, distances = generate.nearest_real(sim, cat, point, decoded)
    image = png_bytes(upscale(decoded[0], display_scale(cat.model.input_size)))
    columns[0].image(image, caption=caption, output_format="PNG")
    columns[1].image(session.thumbnail_png(rows[0]), output_format="PNG",  # already PNG: "auto" would re-encode
                     caption=f"Nearest real galaxy ({sim.name}): {galaxy_caption(data, rows[0], distances[0])}")
    return image, int(rows[0])


def catalogue_gallery(session: Session, rows: Sequence[int], captions: Sequence[str], columns: int = 6,
                      scale: int = 2) -> None:
    """Catalogue galaxies by row, from :meth:`Session.thumbnail_png` (each encoded once per server)."""
    gallery([session.thumbnail_png(r, scale) for r in rows], captions, columns)


def upload(label: str, key: str, session: Session, framing: bool = False, on_change=None) -> PreparedImage | None:
    """A galaxy picture from the user, prepared like the catalogue (sky matched to the catalogue's,
    framed too when ``framing``); errors shown, never raised."""
    file = st.file_uploader(label, type=UPLOAD_EXTENSIONS, key=key, on_change=on_change)
    if file is None:
        return None
    try:
        return _prepared_upload(file.file_id, session.target_extent if framing else None, session.sky_level, file)
    except GalaxyVAEError as exc:
        st.error(error_text(exc))
        return None


def _prepare(source, target: float | None, sky: tuple) -> PreparedImage:
    return prepare_upload(source, framing="none" if target is None else "auto", target_fraction=target, sky=sky)


@st.cache_resource(show_spinner="Preparing your picture…", max_entries=8)
def _prepared_upload(file_id: str, target: float | None, sky: tuple, _file) -> PreparedImage:
    """An upload prepared once per file, framing target and sky level, not on every rerun (a large
    photo takes most of a second). The file object itself is passed, so messages name the file."""
    _file.seek(0)
    return _prepare(_file, target, sky)


@st.cache_resource(show_spinner=False, max_entries=8)
def _prepared_file(path: str, stamp: tuple, target: float | None, sky: tuple) -> PreparedImage:
    return _prepare(path, target, sky)


def prepared_file(path: Path, session: Session, framing: bool = False) -> PreparedImage | None:
    """A picture on disk (the Milky Way) prepared as :func:`upload` prepares one, cached by path and
    stamp (its stored cutout is read-only); errors shown, never raised."""
    try:
        return _prepared_file(str(path), stamp(Path(path)), session.target_extent if framing else None,
                              session.sky_level)
    except GalaxyVAEError as exc:
        st.error(error_text(exc))
        return None


def look_up(cat: Catalogue, prepared: PreparedImage, k: int = 12, invariant: bool = False) -> Query:
    """:meth:`Catalogue.look_up` of a prepared upload. The first call per model measures the
    catalogue's own reconstruction errors for the outlier check (seconds at the sample's size)."""
    with st.spinner("Measuring how the model sees its own catalogue (once per model)…"):
        return cat.look_up(prepared.stored, k, invariant)


def show_query(query: Query, prepared: PreparedImage, left, right) -> None:
    """A prepared upload as the model sees it (in ``left``) beside its reconstruction (``right``),
    then its preparation notes and, when it lies outside the catalogue, a warning."""
    left.image(upscale(model_view(prepared.stored), 3), caption="The query, prepared as the catalogue is")
    if query.reconstruction is not None:
        right.image(upscale(query.reconstruction, 3), caption="Its reconstruction by the model")
    if prepared.notes:
        st.caption(join_notes(prepared.notes))
    if query.outlier["outlier"]:
        st.warning(outlier_message(query.outlier))


@contextmanager
def guard():
    """Whatever goes wrong inside (a page run, a fragment), the visitor sees what to do and the
    traceback goes to the server log, never to the page. st.stop / st.rerun / st.switch_page pass
    through: they are not Exceptions."""
    try:
        yield
    except GalaxyVAEError as exc:  # input we could not use, said in the input's own terms
        st.error(error_text(exc))
    except Exception:
        log.exception("unexpected error while running a page")
        st.error(f"{UNEXPECTED}, and it is not your input's fault: the details went to the server log. "
                 "Try another picture or setting, or reload the page; if it happens again, please report it.")


def guarded(fn):
    """``fn`` run under :func:`guard`: for fragments, whose reruns run outside the page's own guard."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with guard():
            return fn(*args, **kwargs)
    return run


def paged_gallery(session: Session, rows, captions, key: str, columns: int = 8) -> None:
    """A gallery of catalogue galaxies one page at a time (never thousands of images at once),
    with a page chooser keyed ``key``; ``captions`` aligned with ``rows``."""
    rows, captions = np.asarray(rows, dtype=np.int64), list(captions)
    pages = max(1, -(-len(rows) // selection.PAGE_SIZE))
    number = st.number_input(f"Page (of {pages})", 1, pages, 1, key=key) if pages > 1 else 1
    start = (int(number) - 1) * selection.PAGE_SIZE
    shown, _ = selection.page(rows, number)
    catalogue_gallery(session, shown, captions[start:start + len(shown)], columns=columns)


def selection_panel(session: Session, rows: np.ndarray, k: int) -> None:
    """What a box or lasso holds: counts per class beside the whole catalogue's, a CSV of it, its
    galaxies page by page, and "more like these" in the session's similarity."""
    data, cat, sim = session.data, session.catalogue, session.similarity
    st.subheader(f"{len(rows):,} galaxies in the selection")
    left, right = st.columns([2, 1])
    left.dataframe(pd.DataFrame(selection.class_counts(data, rows)), hide_index=True, key="selection_counts",
                   column_config={c: st.column_config.NumberColumn(format="percent")
                                  for c in ("share of selection", "share of catalogue")})
    right.download_button("Selection (CSV)", pd.DataFrame(selection.selection_rows(data, rows, cat.map_xy)).to_csv(
        index=False), file_name="selection.csv", mime="text/csv", key="download_selection", on_click="ignore")
    paged_gallery(session, rows, [galaxy_caption(data, r) for r in rows], key="selection_page")
    if st.toggle(f"More like these ({sim.name})", key="more_like_these", persist_state="session",
                 help="The galaxies nearest the selection's mean, none of them in the selection."):
        found = sim.like(rows, k)
        catalogue_gallery(session, found.indices[0], neighbour_captions(found, data), columns=8)
        st.download_button("More like these (CSV)", pd.DataFrame(neighbour_table(found, data)).to_csv(index=False),
                           file_name="more_like_these.csv", mime="text/csv", key="download_more", on_click="ignore")


# --- the generator's detail code ----------------------------------------------------------------

def _anchor() -> None:
    """Remember where the current details were chosen: "keep details" carries those to every point."""
    st.session_state.gen_anchor = (st.session_state.gen_z1, st.session_state.gen_z2)


def _new_details() -> None:
    st.session_state.gen_detail_seed = int(st.session_state.gen_detail_seed) + 1
    _anchor()


def detail_controls(widget_args: dict) -> tuple[str, int]:
    """The generator's detail mode and seed (models with a detail code), drawn with ``widget_args``
    (persistence, URL binding); "New details" steps the seed and re-anchors kept details."""
    c = st.columns([3, 1, 1], vertical_alignment="bottom")
    mode = c[0].radio("Details", generate.DETAIL_MODES, horizontal=True, key="gen_detail_mode", on_change=_anchor,
                      help="new: drawn for each point from the model's prior p(details | map point) with the seed; "
                           "keep: the details drawn with the seed where you chose them, carried to every point; "
                           "typical: the prior's mean at each point.", **widget_args)
    seed = c[1].number_input("Detail seed", 0, generate.MAX_SEED, key="gen_detail_seed", on_change=_anchor,
                             **widget_args)
    c[2].button("New details", key="gen_new_details", on_click=_new_details)
    return mode, int(seed)


# --- the model page's realism panel -------------------------------------------------------------

def realism_panel(session: Session) -> None:
    """The *Measure realism* button, then the selected checkpoint's statmorph W1 table, its ratios to
    the real-vs-real baseline, the other figures as sentences, and the histograms."""
    from galaxy_vae.figures import realism_histograms
    from galaxy_vae.quality import realism_notes, realism_rows
    from galaxy_vae.realism import STATS

    realism = session.realism(st.button("Measure realism", key="measure_realism"))
    if realism is None:
        st.info("Press *Measure realism* to measure this checkpoint (about a minute, then kept for this server); "
                "`python -m galaxy_vae evaluate --realism` gives the same figures in a shell.")
        return
    report, values = realism
    w1, ratios = realism_rows(report)
    number = st.column_config.NumberColumn
    st.dataframe(pd.DataFrame(w1).set_index("set"), key="realism_table",
                 column_config={s: number(s, format="%.4f") for s in STATS})
    st.caption("The same as multiples of the real-vs-real baseline (target: at most 3×):")
    st.dataframe(pd.DataFrame(ratios).set_index("set"), key="realism_ratios",
                 column_config={s: number(s, format="%.1f×") for s in STATS})
    for note in realism_notes(report):
        st.caption(note)
    st.plotly_chart(realism_histograms(values, STATS + ("axis_ratio",)), key="realism_histograms")
