"""Milky Way challenge: the catalogue ranked by likeness to our Milky Way, and generated lookalikes."""

import pandas as pd
import streamlit as st

from galaxy_vae import app
from galaxy_vae import lookalikes as mw
from galaxy_vae.errors import GalaxyVAEError

WIDGETS = {"query": "mw_query", "framing": "mw_framing", "k": "mw_k", "similarity": "mw_similarity",
           "temperature": "mw_temperature", "n": "mw_n", "seed": "mw_seed"}  # URL name -> widget key
QUERIES = {"milky_way": "NASA's face-on Milky Way", "upload": "Your picture"}
NO_MILKY_WAY = (f" (NASA's Milky Way picture was not found: put it at `{mw.MILKY_WAY_DEFAULT}` or set "
                f"${mw.MILKY_WAY_ENV} to its path.)")

st.title("Milky Way challenge")
st.caption("Which catalogue galaxy looks most like our Milky Way seen face-on (a large barred spiral), "
           "and what would new Milky-Way-like galaxies look like? Copy the page's URL to share this view.")
session = app.sidebar()
cat, data, state = session.catalogue, session.data, st.session_state
if "mw_state" not in state:  # first load of the session: a shared link's parameters decide
    state.mw_state = mw.read_params(st.query_params.to_dict())
for name, key in WIDGETS.items():  # widget values are dropped while another page is shown
    state.setdefault(key, state.mw_state[name])


def _sync_url() -> None:
    """Keep the page state, and the URL that reproduces it, in step with the widgets."""
    state.mw_state = {name: state.get(key, state.mw_state[name]) for name, key in WIDGETS.items()}
    if st.query_params.to_dict() != (wanted := mw.write_params(state.mw_state)):
        st.query_params.from_dict(wanted)


def _on_upload() -> None:  # a new picture becomes the query
    state.mw_query = "upload" if state.get("mw_upload") else state.mw_query


with app.timed("milky_way"):
    path = mw.milky_way_path()
    choices = [q for q in QUERIES if path or q == "upload"]
    if state.mw_query not in choices:
        state.mw_query = "upload"
    c = st.columns([2, 2, 3])
    choice = c[0].radio("Query", choices, format_func=QUERIES.get, key="mw_query")
    framing = c[1].toggle("Automatic framing", key="mw_framing",
                          help="Pad or crop so the galaxy fills as much of the frame as catalogue galaxies do.")
    with c[2]:
        uploaded = app.upload("Upload a galaxy picture", "mw_upload", session, framing=framing, on_change=_on_upload)
    prepared = app.prepared_file(path, session, framing) if choice == "milky_way" else uploaded
    if prepared is None:
        _sync_url()
        st.info("Upload a picture of a galaxy to start." + ("" if path else NO_MILKY_WAY))
        st.stop()

    c = st.columns(4)
    c[0].image(prepared.image, caption="The picture as read", width="stretch")
    c[1].image(prepared.framing.image if prepared.framing else prepared.image, width="stretch",
               caption="Framed like the catalogue" if prepared.framing else "Framing off: the centre square is used")
    app.show_query(cat, prepared, c[2], c[3])

    dense_path = mw.dense_checkpoint(session.ckpt_key[0])
    ranking = session.milky_way_ranking(prepared.stored, dense_path)
    named = {mw.CONSENSUS: mw.CONSENSUS_LABEL, **dict(zip(ranking.keys, ranking.labels))}
    if state.mw_similarity not in named:
        state.mw_similarity = mw.CONSENSUS
    st.header("The most similar galaxy")
    c = st.columns(2)
    k = c[0].slider("Galaxies shown per similarity (k)", 1, 24, key="mw_k")
    by = c[1].selectbox("Answer chosen by", list(named), format_func=named.get, key="mw_similarity")
    answer, agree = mw.choose_answer(ranking, by), mw.agreement(ranking, k)
    c = st.columns([1, 3])
    c[0].image(session.thumbnail_png(answer.row, 3), output_format="PNG",
               caption=f"{data.ids[answer.row]} · {data.class_names[data.labels[answer.row]]}")
    c[1].markdown(mw.describe_answer(answer, ranking, data, k) + "\n\n" + mw.describe_agreement(agree, k))
    c[1].table(pd.DataFrame(agree["overlap"], index=ranking.keys, columns=ranking.keys).style.format("{:.0%}"))
    if dense_path is None:
        st.caption(f"The seed dense autoencoder's 64-D similarity joins when `{mw.DENSE_AE_CHECKPOINT}` exists.")
    for key, label in zip(ranking.keys, ranking.labels):  # one row per similarity: ranks line up
        rows, caps = mw.ranking_captions(ranking, key, k, data, answer)
        st.markdown(f"**{label}** ({key})")
        app.catalogue_gallery(session, rows, caps, columns=8)
    st.download_button("Ranking (CSV)", pd.DataFrame(mw.ranking_rows(ranking, data, k, answer)).to_csv(index=False),
                       file_name="milky_way_ranking.csv", mime="text/csv", key="mw_download_csv", on_click="ignore")

    st.header("Lookalikes")
    st.caption("Latents drawn from the query's posterior cut off at the temperature: z = μ + σ·e, e standard normal "
               "with |e| ≤ T. T = 0 decodes the mean only; larger T wanders further from the query.")
    c = st.columns(3)
    temperature = c[0].slider("Temperature T (posterior σ)", 0.0, 5.0, step=0.1, key="mw_temperature")
    n = c[1].slider("Samples", 1, 64, key="mw_n")
    seed = c[2].number_input("Seed", 0, 2**31 - 1, step=1, key="mw_seed")
    _sync_url()
    try:
        looks = mw.sample_lookalikes(cat, prepared.stored, n, temperature, int(seed))
    except GalaxyVAEError as exc:
        st.info(str(exc))
        st.stop()
    st.caption("Under each lookalike and its predicted class: the nearest real galaxy in the model's latent.")
    sample_caps, nearest_caps = mw.lookalike_captions(looks, data)
    for i in range(0, n, 8):  # a row of lookalikes, then their nearest galaxies right beneath
        app.gallery(looks.images[i:i + 8], sample_caps[i:i + 8], columns=8, scale=2)
        app.catalogue_gallery(session, looks.nearest[i:i + 8], nearest_caps[i:i + 8], columns=8)
    st.download_button("Lookalike grid (PNG)", lambda: mw.grid_png(looks.images), file_name="milky_way_lookalikes.png",
                       mime="image/png", key="mw_download_grid", on_click="ignore")
