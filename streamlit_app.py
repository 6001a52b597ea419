"""galaxy_vae dashboard: `streamlit run streamlit_app.py`. Wires the pages; nothing else."""

import streamlit as st


def run() -> None:
    st.set_page_config(page_title="galaxy_vae", page_icon=":milky_way:", layout="wide")
    home = st.Page(lambda: st.title("galaxy_vae"), title="Home", default=True)
    st.navigation([home]).run()


run()
