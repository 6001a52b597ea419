"""Latent map: every galaxy at its latent mean. Click one, find it by id, draw a box or lasso, or
upload a picture, to see its nearest neighbours. The URL holds the view: ?galaxy=ID, k, the
similarity, a selection (?select=box:...)."""

import pandas as pd
import streamlit as st

from galaxy_vae import app, selection
from galaxy_vae.captions import esc, galaxy_caption, neighbour_captions
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.figures import latent_map, selected_rows
from galaxy_vae.generate import find_row
from galaxy_vae.search import neighbour_table

state, KEEP = st.session_state, dict(persist_state="session", bind="query-params")
BACKGROUNDS = {"none": "nothing", "decoded": "decoded galaxies", "real": "real galaxies"}


def _on_select() -> None:
    """A box or lasso selects a region (kept in the URL); a click on a galaxy makes it the query."""
    event = state["map"].selection
    shape, rows = selection.from_plotly(event), selected_rows(event)
    if shape is not None:  # Plotly draws the shape itself: an outline would only redraw the map
        state.map_query, state.map_shape, state.map_shape_drawn = "selection", shape, True
    elif rows:
        state.map_query, state.galaxy = "galaxy", str(data.ids[rows[0]])


def _on_galaxy() -> None:
    state.map_query = "galaxy" if state.get("galaxy") else None


def _on_upload() -> None:
    state.map_query = "upload" if state.get("map_upload") else None


session = app.session()
cat, sim, data = session.catalogue, session.similarity, session.data
if "map_query" not in state:  # what the user chose last; a shared link's own choice comes first
    linked = selection.parse(st.query_params.get("select"))
    state.map_query, state.map_shape = ("selection", linked) if linked else ("galaxy", None)
    state.map_shape_drawn = False
st.title("Latent map")
st.caption(f"Each point is a galaxy placed by the model's latent mean; neighbours are found by the {sim.name} "
           "similarity and ringed wherever they lie. Click a galaxy, find one by id, draw a box or lasso (the map's "
           "toolbar), or upload a picture.")
c = st.columns([2, 3, 2, 2])
k = c[0].slider("Neighbours (k)", 1, 48, 12, key="k", **KEEP)
c[1].text_input("Find a galaxy by id", key="galaxy", on_change=_on_galaxy, placeholder="an SDSS objID", **KEEP)
framing = c[2].toggle("Auto framing of uploads", False, key="framing", **KEEP,
                      help="Pad or crop an upload so its galaxy fills as much of the frame as catalogue galaxies do. "
                           "Off by default: measured on re-cut catalogue galaxies, it finds worse neighbours. An "
                           "upload's sky is always matched to the catalogue's.")
background = c[3].selectbox("Behind the map", list(BACKGROUNDS), format_func=BACKGROUNDS.get, key="background", **KEEP)
prepared = app.upload("Upload a galaxy picture", "map_upload", session, framing=framing, on_change=_on_upload)

choice, query, neighbours, xy, rows, shape = state.map_query, None, None, None, None, None
if choice == "upload" and prepared is not None:
    query = app.look_up(sim.catalogue, prepared, k, sim.invariant)
    neighbours = query.neighbours
    xy = query.xy if sim.catalogue is cat else app.look_up(cat, prepared).xy
elif choice == "selection" and state.map_shape is not None:
    shape = state.map_shape
    rows = selection.rows_inside(cat.map_xy, shape)
    st.query_params["select"] = shape.to_text()
elif choice == "galaxy" and state.get("galaxy"):
    try:
        row = find_row(data.ids, state.galaxy)
        neighbours, xy = sim.of_rows([row], k), cat.map_xy[row]
    except GalaxyVAEError:
        st.warning(f"No galaxy with id {esc(state.galaxy)} in {esc(data.name)}: copy an id from a caption or the "
                   "map's hover, or click a galaxy.")
if choice != "selection":
    st.query_params.pop("select", None)

fig = latent_map(cat.map_xy, data.labels, data.class_names, data.ids, query=xy,
                 neighbours=None if neighbours is None else neighbours.indices[0],
                 background=session.map_background(background == "real") if background != "none" else None,
                 axis_names=cat.axis_names, layers=session.map_layers(),
                 outline=None if shape is None or state.get("map_shape_drawn") else shape.vertices())
st.plotly_chart(fig, key="map", on_select=_on_select, selection_mode=("points", "box", "lasso"))

if rows is not None:
    app.selection_panel(session, rows, k)
    st.stop()
if neighbours is None:
    st.info("Click a galaxy on the map, find one by id, draw a box or lasso, or upload a picture.")
    st.stop()
st.subheader("Query")
if query is None:
    st.image(session.thumbnail_png(row, 3), caption=galaxy_caption(data, row), output_format="PNG")
else:
    app.show_query(query, prepared, *st.columns(2))
st.subheader(f"{k} nearest galaxies by the {sim.name}")
app.catalogue_gallery(session, neighbours.indices[0], neighbour_captions(neighbours, data))
st.download_button("Download neighbours (CSV)", pd.DataFrame(neighbour_table(neighbours, data)).to_csv(index=False),
                   file_name="neighbours.csv", mime="text/csv", key="download_neighbours", on_click="ignore")
