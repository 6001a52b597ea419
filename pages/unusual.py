"""Unusual galaxies: the catalogue ranked by how little it resembles the rest, the anomaly search
astronomers run on learned representations (Walmsley et al. 2022, Stein et al. 2022)."""

import pandas as pd
import streamlit as st

from galaxy_vae import app
from galaxy_vae.captions import galaxy_caption
from galaxy_vae.figures import latent_map

session = app.session()
cat, sim, data = session.catalogue, session.similarity, session.data
SCORES = {"alone": f"distance to the 10th nearest galaxy ({sim.name})"}
if cat.decodes:
    SCORES["recon"] = "reconstruction error (the model's)"

st.title("Unusual galaxies")
st.caption("The galaxies least like any other: those whose 10 nearest neighbours lie farthest away in the chosen "
           "similarity, or those the model reconstructs worst. Mergers, artefacts, rare shapes and "
           "mislabelled galaxies collect here.")
c = st.columns([3, 1])
score = c[0].selectbox("Ranked by", list(SCORES), format_func=SCORES.get, key="unusual_score",
                       persist_state="session", bind="query-params")
shown = c[1].slider("How many", 10, 500, 96, step=2, key="unusual_n", persist_state="session", bind="query-params")
with st.spinner("Measuring every galaxy (once per catalogue)…"):
    values = sim.catalogue.neighbour_distance(10) if score == "alone" else cat.recon_errors
order = values.argsort()[::-1][:shown]  # most unusual first

st.plotly_chart(latent_map(cat.map_xy, data.labels, data.class_names, data.ids, marked=order, marked_name="unusual",
                           axis_names=cat.axis_names, height=420, layers=session.map_layers()), key="unusual_map")
table = pd.DataFrame({"rank": range(1, len(order) + 1), "index": order, "id": data.ids[order],
                      "class_name": [data.class_names[data.labels[r]] for r in order], "score": values[order]})
st.caption(f"The {shown} most unusual of {len(data):,} galaxies, marked on the map with squares; "
           f"the score's median over the catalogue is {float(pd.Series(values).median()):.4g}.")
app.paged_gallery(session, order, [f"#{i} {galaxy_caption(data, r)} · {values[r]:.3g}" for i, r in enumerate(order, 1)],
                  key="unusual_page")
st.download_button("Ranking (CSV)", table.to_csv(index=False), file_name="unusual_galaxies.csv", mime="text/csv",
                   key="download_unusual", on_click="ignore")
