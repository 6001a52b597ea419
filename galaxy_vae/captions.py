"""Words for people: the captions, sentences and warnings the pages and the CLI show.

Plain text, never markup built from outside input: ids and class names come from dataset files,
so pages show these strings as text (``st.text`` / image captions), or escape them first when
they go into Markdown (:func:`markdown_escape`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from galaxy_vae.data import GalaxyData
from galaxy_vae.lookalikes import CONSENSUS, Answer, Lookalikes, Ranking
from galaxy_vae.search import Neighbours, neighbour_table

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


def markdown_escape(text: str) -> str:
    """``text`` with every character Markdown (or Streamlit's extensions) would interpret escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def neighbour_captions(neighbours: Neighbours, data: GalaxyData, prefix: str = "") -> list[str]:
    """"#rank id · class · d=distance" for the first query's neighbours, nearest first."""
    return [f"{prefix}#{r['rank']} {r['id']} · {r['class_name']} · d={r['distance']:.3f}"
            for r in neighbour_table(neighbours, data)]


def galaxy_caption(data: GalaxyData, row: int, distance: float | None = None) -> str:
    """"id · class" (· d=distance) of one catalogue galaxy."""
    text = f"{data.ids[row]} · {data.class_names[data.labels[row]]}"
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
    return (f"**{markdown_escape(data.ids[answer.row])}** ({markdown_escape(data.class_names[label])}), "
            f"chosen as {why}. It ranks {ranks}: in the top {k} of {in_top} of {len(ranking.keys)} similarities.")


def ranking_captions(ranking: Ranking, key: str, k: int, data: GalaxyData,
                     answer: Answer | None = None) -> tuple[np.ndarray, list[str]]:
    """Rows (k,) of similarity ``key``'s top k and their captions "key #rank id · class · d=…" (★: the answer)."""
    rows = neighbour_table(ranking.top(key, k), data)
    return np.array([r["index"] for r in rows], dtype=np.int64), [
        f"{key} #{r['rank']} {r['id']} · {r['class_name']} · d={r['distance']:.4g}"
        + (" ★" if answer is not None and r["index"] == answer.row else "") for r in rows]


def lookalike_captions(looks: Lookalikes, data: GalaxyData) -> tuple[list[str], list[str]]:
    """Captions of each lookalike (predicted class and probability) and of its nearest real galaxy."""
    names = looks.class_names
    samples = [f"lookalike {i + 1} · predicted {names[c]} ({p:.0%})"
               for i, (c, p) in enumerate(zip(looks.predicted, looks.probability))]
    nearest = [f"nearest to {i + 1}: {data.ids[r]} · {data.class_names[data.labels[r]]} · d={d:.3g}"
               for i, (r, d) in enumerate(zip(looks.nearest, looks.distances))]
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
