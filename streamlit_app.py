"""galaxy_vae dashboard: `streamlit run streamlit_app.py`. Wires the pages and the shared sidebar."""

import streamlit as st

from galaxy_vae import app


def run() -> None:
    st.set_page_config(page_title="galaxy_vae", page_icon=":milky_way:", layout="wide")
    page = st.navigation([st.Page(path, title=title, icon=icon, default=i == 0)
                          for i, (path, title, icon, _) in enumerate(app.PAGES)])
    app.follow_deep_link()
    app.sidebar()  # dataset and model: drawn here once, so every page shares the choice
    with app.guard():
        page.run()


run()
