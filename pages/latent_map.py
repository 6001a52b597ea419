"""Latent map: every galaxy at its latent mean. Click one, or upload a picture, to see its neighbours."""

import pandas as pd
import streamlit as st

from galaxy_vae import app
from galaxy_vae.captions import galaxy_caption, neighbour_captions
from galaxy_vae.figures import latent_map, selected_rows
from galaxy_vae.search import neighbour_table

if "map_query" not in st.session_state:
    st.session_state.map_query = None  # ("row", row, data_key) or ("upload",): whichever the user chose last


def _on_select() -> None:
    rows = selected_rows(st.session_state["map"].selection)
    if rows:  # a row means a galaxy only in the catalogue it was clicked in
        st.session_state.map_query = ("row", rows[0], st.session_state.map_data_key)


def _on_upload() -> None:
    st.session_state.map_query = ("upload",) if st.session_state.get("map_upload") else None


session = app.session()
st.title("Latent map")
st.caption("Each point is a galaxy placed by the model's latent mean; similar galaxies lie close together. "
           "Click a galaxy, or upload a picture, to see its nearest neighbours.")
cat = session.catalogue
data = cat.data
st.session_state.map_data_key = session.data_key
c1, c2, c3, c4 = st.columns(4)
k = c1.slider("Neighbours (k)", 1, 48, 12, key="k", persist_state="session", bind="query-params")
invariant = c2.toggle("Rotation/flip invariant", key="invariant", persist_state="session", bind="query-params",
                      help="Compare all 8 rotations and mirror images of the query; keep each galaxy's best match.")
framing = c3.toggle("Auto framing of uploads", True, key="framing", persist_state="session", bind="query-params",
                    help="Pad or crop an upload so its galaxy fills as much of the frame as catalogue galaxies do.")
background = c4.toggle("Decoded galaxies behind the map", key="background", persist_state="session")
prepared = app.upload("Upload a galaxy picture", "map_upload", session, framing=framing, on_change=_on_upload)

choice, query = st.session_state.map_query, None
neighbours = xy = None
if choice and choice[0] == "upload" and prepared is not None:
    query = app.look_up(cat, prepared, k, invariant)
    neighbours, xy = query.neighbours, query.xy
elif choice and choice[0] == "row" and choice[-1] == session.data_key:
    neighbours, xy = cat.query_rows([choice[1]], k, invariant), cat.map_xy[choice[1]]

fig = latent_map(cat.map_xy, data.labels, data.class_names, data.ids, query=xy,
                 neighbours=None if neighbours is None else neighbours.indices[0],
                 background=session.map_background() if background else None, axis_names=cat.axis_names)
st.plotly_chart(fig, key="map", on_select=_on_select, selection_mode="points")

if neighbours is None:
    st.info("Click a galaxy on the map, or upload a picture, to see its nearest neighbours.")
    st.stop()

st.subheader("Query")
if query is None:
    st.image(session.thumbnail_png(choice[1], 3), caption=galaxy_caption(data, choice[1]), output_format="PNG")
else:
    app.show_query(query, prepared, *st.columns(2))

st.subheader(f"{k} nearest galaxies" + (" (any rotation or mirror image)" if invariant else ""))
app.catalogue_gallery(session, neighbours.indices[0], neighbour_captions(neighbours, data))
st.download_button("Download neighbours (CSV)", pd.DataFrame(neighbour_table(neighbours, data)).to_csv(index=False),
                   file_name="neighbours.csv", mime="text/csv", key="download_neighbours", on_click="ignore")
