"""Home: what galaxy_vae is for, the dataset in use with its credits, sample galaxies, and the way in."""

import pandas as pd
import streamlit as st

from galaxy_vae import app
from galaxy_vae.captions import esc
from galaxy_vae.quality import sample_rows

PER_CLASS = 6  # sample galaxies shown per class

session = app.session()
st.title("galaxy_vae")
st.markdown(
    "**The Milky Way challenge.** We cannot photograph our own galaxy from outside, so which galaxy of a "
    "real survey looks most like it? galaxy_vae learns a compact latent space of galaxy images, finds the "
    "catalogue galaxies nearest to a face-on picture of the Milky Way, and generates new lookalikes.")
data = session.data

st.header("Where to go")
for path, title, icon, what in app.PAGES[1:]:
    st.page_link(path, label=f"**{title}**: {what}", icon=icon)

st.header("The dataset")
st.markdown(f"**{esc(data.name)}**: {len(data):,} galaxies, {data.images.shape[1]}×{data.images.shape[2]} pixels "
            f"in colour, {len(data.class_names)} classes. {esc(data.source)}")
counts = data.counts()
st.dataframe(pd.DataFrame({"class": list(counts), "galaxies": list(counts.values()),
                           "share": [c / len(data) for c in counts.values()]}),
             hide_index=True, key="home_counts", width="content",
             column_config={"share": st.column_config.NumberColumn(format="percent")})
st.markdown(
    "**Credits.** Images: the Sloan Digital Sky Survey (SDSS). Labels: Galaxy Zoo volunteers "
    "(Lintott et al. 2008, 2011). The 69×69 cutout recipe and the Galaxy10 SDSS and DECaLS datasets: "
    "astroNN's Galaxy10 (Leung & Bovy). The face-on Milky Way: NASA/GSFC Scientific Visualization Studio.")

st.header("Sample galaxies")
st.caption(f"{PER_CLASS} galaxies of each class, the same ones on every visit, at the 64×64 the models see.")
for name, rows in zip(data.class_names, sample_rows(data.labels, len(data.class_names), PER_CLASS)):
    st.subheader(f"{esc(name)} ({counts[name]:,})")
    if len(rows) == 0:
        st.caption("No galaxies of this class in the dataset.")
        continue
    app.catalogue_gallery(session, rows, [esc(data.ids[r]) for r in rows], columns=PER_CLASS)
