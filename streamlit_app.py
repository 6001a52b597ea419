"""galaxy_vae dashboard: `streamlit run streamlit_app.py`. Wires the pages; nothing else."""

import streamlit as st


def run() -> None:
    st.set_page_config(page_title="galaxy_vae", page_icon=":milky_way:", layout="wide")
    pages = [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
        st.Page("pages/generator.py", title="Generator", icon=":material/tune:"),
        st.Page("pages/milky_way.py", title="Milky Way challenge", icon=":material/star:"),
        st.Page("pages/model_quality.py", title="Models & quality", icon=":material/analytics:"),
    ]
    st.navigation(pages).run()


run()
