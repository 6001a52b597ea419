"""Words for people: the captions, sentences and warnings the pages and the CLI show.

Streamlit renders captions, errors and markdown as Markdown, and ids, class names, file names and
a file's first bytes come from outside: every such piece goes through :func:`esc` here, so a file
named ``![x](http://…).png`` shows as those characters and makes the browser fetch nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from galaxy_vae.data import GalaxyData
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.lookalikes import CONSENSUS, Answer, Lookalikes, Ranking
from galaxy_vae.search import Neighbours, neighbour_table

# Characters that start Markdown (or Streamlit's extensions: :colour[], $math$, :emoji:) markup.
# Digits, letters, spaces, commas, hyphens and apostrophes -- every id and class name of Galaxy10
# and the sample -- pass unchanged.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~$:=^+])")


_AUTOLINK = re.compile(r"(?i)(://|\bwww\.|@)")  # where GFM would turn plain text into a link


def esc(text) -> str:
    """Text from outside (a file name, a dataset's ids and class names, a file's first bytes) made
    safe to show in Markdown: every markup character escaped and the places GFM would auto-link
    (``http://``, ``www.``, ``@``) broken by an invisible zero-width space, on one line, so it
    shows as typed and nothing in it is fetched or clickable."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    return _AUTOLINK.sub(lambda m: m.group(1)[0] + "\u200b" + m.group(1)[1:], text)


def error_text(exc: Exception) -> str:
    """A GalaxyVAEError for a page: the parts that quote the user's input (what, found) escaped,
    our own words (expected, fix: they may hold `commands`) as they are."""
    if isinstance(exc, GalaxyVAEError):
        return f"{esc(exc.what)}: expected {exc.expected}; found {esc(exc.found)}. {exc.fix}"
    return esc(exc)


def neighbour_captions(neighbours: Neighbours, data: GalaxyData, prefix: str = "") -> list[str]:
    """"#rank id · class · d=distance" for the first query's neighbours, nearest first."""
    return [f"{prefix}#{r['rank']} {esc(r['id'])} · {esc(r['class_name'])} · d={r['distance']:.3f}"
            for r in neighbour_table(neighbours, data)]


def galaxy_caption(data: GalaxyData, row: int, distance: float | None = None) -> str:
    """"id · class" (· d=distance) of one catalogue galaxy."""
    text = f"{esc(data.ids[row])} · {esc(data.class_names[data.labels[row]])}"
    return text if distance is None else f"{text} · d={distance:.3f}"


def describe_agreement(agree: dict, k: int) -> str:
    """:func:`lookalikes.agreement` in one sentence (Markdown of our own words only)."""
    return (f"**Agreement:** two similarities share on average {agree['mean_overlap']:.0%} of their top {k}; "
            f"{len(agree['in_all'])} galaxies are in every top {k}.")


def describe_answer(answer: Answer, ranking: Ranking, data: GalaxyData, k: int) -> str:
    """The answer in one plain sentence (Markdown; the id and class from the dataset are escaped)."""
    label = int(data.labels[answer.row])
    named = dict(zip(ranking.keys, ranking.labels))
    ranks = "; ".join(f"#{r} under {named[key]}" if r else f"beyond #{ranking.indices.shape[1]} under {named[key]}"
                      for key, r in answer.ranks.items())
    if answer.by == CONSENSUS:
        why = f"the best summed rank over all {len(ranking.keys)} similarities"
    else:
        why = f"the nearest galaxy under {named[answer.by]}"
    in_top = sum(1 for r in answer.ranks.values() if r and r <= k)
    return (f"**{esc(data.ids[answer.row])}** ({esc(data.class_names[label])}), "
            f"chosen as {why}. It ranks {ranks}: in the top {k} of {in_top} of {len(ranking.keys)} similarities.")


def ranking_captions(ranking: Ranking, key: str, k: int, data: GalaxyData,
                     answer: Answer | None = None) -> tuple[np.ndarray, list[str]]:
    """Rows (k,) of similarity ``key``'s top k and their captions "key #rank id · class · d=…" (★: the answer)."""
    rows = neighbour_table(ranking.top(key, k), data)
    return np.array([r["index"] for r in rows], dtype=np.int64), [
        f"{key} #{r['rank']} {esc(r['id'])} · {esc(r['class_name'])} · d={r['distance']:.4g}"
        + (" ★" if answer is not None and r["index"] == answer.row else "") for r in rows]


def lookalike_captions(looks: Lookalikes, data: GalaxyData) -> tuple[list[str], list[str]]:
    """Captions of each lookalike (predicted class and probability) and of its nearest real galaxy."""
    names = looks.class_names
    samples = [f"lookalike {i + 1} · predicted {esc(names[c])} ({p:.0%})"
               for i, (c, p) in enumerate(zip(looks.predicted, looks.probability))]
    nearest = [f"nearest to {i + 1}: {galaxy_caption(data, r, d)}" for i, (r, d) in enumerate(zip(looks.nearest,
                                                                                                 looks.distances))]
    return samples, nearest


def outlier_message(report: dict) -> str:
    """Plain words for :meth:`Catalogue.outlier_report` when the query lies outside the catalogue."""
    parts = []
    if report["nn_distance"] > report["nn_threshold"]:
        parts.append(f"its nearest catalogue galaxy is {report['nn_distance']:.3f} away, farther than for "
                     f"99 % of catalogue galaxies ({report['nn_threshold']:.3f})")
    if report.get("recon_error", 0.0) > report.get("recon_threshold", float("inf")):
        parts.append(f"the model reconstructs it worse (MSE {report['recon_error']:.4f}) than 99 % of the "
                     f"catalogue ({report['recon_threshold']:.4f})")
    return ("This picture lies outside what the catalogue contains: " + "; ".join(parts) +
            ". Its neighbours are the closest the catalogue has, but may not look much like it.")


def join_notes(notes: Sequence[str]) -> str:
    """Preparation notes of an upload on one line."""
    return " · ".join(notes)
