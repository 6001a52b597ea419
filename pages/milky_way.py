"""Milky Way challenge: the catalogue ranked by likeness to our Milky Way, and generated lookalikes."""

import pandas as pd
import streamlit as st

from galaxy_vae import app, captions
from galaxy_vae import lookalikes as mw
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.paths import MILKY_WAY_ENV, milky_way_default, milky_way_path
from galaxy_vae.raster import grid_png

QUERIES = {"milky_way": "NASA's face-on Milky Way", "upload": "Your picture"}
URL = dict(bind="query-params", persist_state="session")  # a copied URL reproduces the view
NO_MILKY_WAY = (f" (NASA's Milky Way picture was not found: put it at `{milky_way_default()}` or set "
                f"${MILKY_WAY_ENV} to its path.)")
state = st.session_state


def _on_upload() -> None:  # a new picture becomes the query
    if state.get("mw_upload"):
        state.query = "upload"


session = app.session()
st.title("Milky Way challenge")
st.caption("Which catalogue galaxy looks most like our Milky Way seen face-on (a large barred spiral), "
           "and what would new Milky-Way-like galaxies look like? Copy the page's URL to share this view.")
cat, data = session.catalogue, session.data
path = milky_way_path()
choices = [q for q in QUERIES if path or q == "upload"]
c = st.columns([2, 2, 3])
choice = c[0].radio("Query", choices, format_func=QUERIES.get, key="query", **URL)
framing = c[1].toggle("Automatic framing", False, key="framing", **URL,
                      help="Pad or crop so the galaxy fills as much of the frame as catalogue galaxies do. Off by "
                           "default: measured on re-cut catalogue galaxies, it finds worse neighbours.")
with c[2]:
    uploaded = app.upload("Upload a galaxy picture", "mw_upload", session, framing=framing, on_change=_on_upload)
prepared = app.prepared_file(path, session, framing) if choice == "milky_way" else uploaded
if prepared is None:
    st.info("Upload a picture of a galaxy to start." + ("" if path else NO_MILKY_WAY))
    st.stop()

query = app.look_up(cat, prepared)
c = st.columns(4)
c[0].image(prepared.picture, caption="The picture as read", width="stretch")
c[1].image(prepared.framed if prepared.framed is not None else prepared.picture, width="stretch",
           caption="Framed like the catalogue" if prepared.framing else "Framing off: the centre square is used")
app.show_query(query, prepared, c[2], c[3])

ranking = session.milky_way_ranking(prepared.stored)
named = {**dict(zip(ranking.keys, ranking.labels)), mw.CONSENSUS: mw.CONSENSUS_LABEL}  # the default first
st.header("The most similar galaxy")
c = st.columns(2)
k = c[0].slider("Galaxies shown per similarity (k)", 1, 24, 8, key="top_k", **URL)
by = c[1].selectbox("Answer chosen by", list(named), key="answer", **URL,
                    help="One similarity's own nearest galaxy (the first, the default similarity, unless you "
                         "choose another), or the consensus: " + mw.CONSENSUS_LABEL.lower() + ".")
answer, agree = mw.choose_answer(ranking, by), mw.agreement(ranking, k)
c = st.columns([1, 3])
c[0].image(session.thumbnail_png(answer.row, 3), output_format="PNG", caption=captions.galaxy_caption(data, answer.row))
c[1].markdown(captions.describe_answer(answer, ranking, data, k) + "\n\n" + captions.describe_agreement(agree, k))
c[1].table(pd.DataFrame(agree["overlap"], index=ranking.keys, columns=ranking.keys).style.format("{:.0%}"))
st.markdown(f"**Classes among each similarity's {k} nearest galaxies**")
st.table(pd.DataFrame(mw.class_mix(ranking, data.labels, len(data.class_names), k), index=list(ranking.labels),
                      columns=[captions.esc(n) for n in data.class_names]).style.format("{:.0%}"))
if "dense_ae" not in ranking.keys:
    st.caption("The seed dense autoencoder's 64-D similarity joins when `seed_dense_ae.safetensors` is in the "
               "checkpoints folder.")
for key, label in zip(ranking.keys, ranking.labels):  # one row per similarity: ranks line up
    rows, caps = captions.ranking_captions(ranking, key, k, data, answer)
    st.markdown(f"**{label}** ({key})")
    app.catalogue_gallery(session, rows, caps, columns=8)
st.download_button("Ranking (CSV)", pd.DataFrame(mw.ranking_rows(ranking, data, k, answer)).to_csv(index=False),
                   file_name="milky_way_ranking.csv", mime="text/csv", key="mw_download_csv", on_click="ignore")

st.header("Lookalikes")
st.caption("Latents drawn from the query's posterior cut off at the temperature: z = μ + σ·e, e standard normal "
           "with |e| ≤ T. T = 0 decodes the mean only; larger T wanders further from the query."
           + (f" The {cat.model.detail_dim}-D detail code (orientation, elongation, colour, size) is drawn around the "
              "query's own details, spread as much as real galaxies at each sampled map point differ (the learned "
              "prior) times the variety: 0 keeps the query's details alone." if cat.has_detail else ""))
c = st.columns(4 if cat.has_detail else 3)
temperature = c[0].slider("Temperature T (posterior σ)", 0.0, 5.0, mw.DEFAULT_TEMPERATURE, step=0.1,
                          key="temperature", **URL)
n = c[1].slider("Samples", 1, 64, mw.DEFAULT_SAMPLES, key="samples", **URL)
seed = c[2].number_input("Seed", 0, 2**31 - 1, 0, step=1, key="seed", **URL)
variety = (c[3].slider("Detail variety", 0.0, 2.0, mw.DEFAULT_VARIETY, step=0.1, key="variety", **URL)
           if cat.has_detail else mw.DEFAULT_VARIETY)
try:
    looks = mw.sample_lookalikes(cat, prepared.stored, n, temperature, int(seed), variety)
except GalaxyVAEError as exc:
    st.info(captions.error_text(exc))
    st.stop()
if n > 1:
    st.caption(f"These {n} lookalikes differ from each other by {mw.diversity(looks.images):.3f} rms (pixels "
               f"0-1); the query's {n} nearest real galaxies under {captions.esc(ranking.labels[0])} by "
               f"{mw.diversity(mw.real_view(data, ranking.indices[0, :n], looks.images.shape[1])):.3f}.")
st.caption("Under each lookalike and its predicted class: the nearest real galaxy in the model's latent.")
sample_caps, nearest_caps = captions.lookalike_captions(looks, data)
for i in range(0, n, 8):  # a row of lookalikes, then their nearest galaxies right beneath
    app.gallery(looks.images[i:i + 8], sample_caps[i:i + 8], columns=8, scale=2)
    app.catalogue_gallery(session, looks.nearest[i:i + 8], nearest_caps[i:i + 8], columns=8)
st.download_button("Lookalike grid (PNG)", lambda: grid_png(looks.images),
                   file_name="milky_way_lookalikes.png", mime="image/png", key="mw_download_grid", on_click="ignore")
