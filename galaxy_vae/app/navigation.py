"""The app's pages and the sidebar they share: drawn once per run by the entry file, so every page
sees the same dataset and model, and the one thing Streamlit does not do for us (a fresh server's
first request for a page skips the entry file: :func:`session`)."""

from __future__ import annotations

from urllib.parse import urlparse

import streamlit as st

from galaxy_vae.app.cache import Session, _load_data, stamp
from galaxy_vae.captions import error_text
from galaxy_vae.checkpoints import HOW_TO_GET as HOW_TO_GET_CHECKPOINT
from galaxy_vae.checkpoints import list_checkpoints
from galaxy_vae.data import GALAXY10_SDSS_CLASSES, HOW_TO_GET_DATA
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.paths import SAMPLE_NAME, checkpoint_dir, data_dir

# The app's pages in a newcomer's order: (file, title, icon, what it is for). The entry file
# registers them with st.navigation; the home page links to them in this order.
PAGES = [("pages/home.py", "Home", ":material/home:", "what galaxy_vae is for, the dataset and its credits"),
         ("pages/latent_map.py", "Latent map", ":material/scatter_plot:",
          "every galaxy placed by the model; click one, or upload a picture, to see its neighbours"),
         ("pages/generator.py", "Generator", ":material/tune:",
          "decode any point of the latent space, or every step between two galaxies"),
         ("pages/milky_way.py", "Milky Way challenge", ":material/star:",
          "the catalogue galaxies most like our Milky Way, and generated lookalikes"),
         ("pages/unusual.py", "Unusual galaxies", ":material/travel_explore:",
          "the galaxies least like any other: the anomalies a learned similarity finds"),
         ("pages/model_quality.py", "Models & quality", ":material/analytics:",
          "how each model was trained, and how well each similarity retrieves galaxies of the same class")]
ENTRY_FILE = "streamlit_app.py"  # `streamlit run` target, beside pages/
SESSION_KEY = "_session"  # the Session the sidebar built in this run
DEEP_LINK_KEY = "_deep_link"  # (page file, query params) waiting for the entry file to reach


# --- the shared sidebar and navigation ----------------------------------------------------------

def sidebar() -> None:
    """Dataset and checkpoint selectors, drawn by the entry file on every run so that every page
    shares them. Missing or broken files stop the run with how to fix it."""
    folder, ckpt_folder = data_dir(), checkpoint_dir()
    datasets = sorted(folder.glob("*.h5")) + sorted(folder.glob("*.hdf5"))
    checkpoints = list_checkpoints(ckpt_folder, generative=True)
    for found, what, where, fix in ((datasets, "dataset", folder, HOW_TO_GET_DATA),
                                    (checkpoints, "checkpoint", ckpt_folder, HOW_TO_GET_CHECKPOINT)):
        if not found:
            st.error(f"No {what} found in `{where}`.")
            st.info(fix)
            st.stop()
    names = [p.name for p in datasets]
    data_path = datasets[names.index(st.sidebar.selectbox(
        "Dataset", names, index=names.index(SAMPLE_NAME) if SAMPLE_NAME in names else 0, key="dataset",
        bind="query-params", help=f"HDF5 files in {folder}"))]
    ckpt_names = [p.name for p in checkpoints]
    ckpt_path = checkpoints[ckpt_names.index(st.sidebar.selectbox(
        "Model", ckpt_names, key="model", bind="query-params",
        help=f"The map and the generator's model: checkpoints in {ckpt_folder}; the first is the default"))]
    try:
        challenge = False
        probe = _load_data(str(data_path), stamp(data_path), False)
        if probe.class_names == GALAXY10_SDSS_CLASSES:
            challenge = st.sidebar.toggle("Challenge subset (6 face-on classes)", value=True, key="challenge",
                                          help="Drop cigar-shaped and edge-on classes 3-6, as the Milky Way "
                                               "challenge does.")
        session = Session((str(data_path), stamp(data_path), challenge), (str(ckpt_path), stamp(ckpt_path)))
        session.checkpoint  # noqa: B018  (load now, so a broken file is reported here)
        name = st.sidebar.selectbox("Similarity", session.similarity_names(), key="similarity", bind="query-params",
                                    help="How galaxies are compared in every neighbour search; the first is "
                                         "the default. The map always shows the model's latent space.")
        session = Session(session.data_key, session.ckpt_key, name)
    except GalaxyVAEError as exc:
        st.error(error_text(exc))
        st.stop()
    st.sidebar.caption(f"{len(session.data):,} galaxies · {type(session.checkpoint.model).__name__} "
                       f"({session.checkpoint.model.latent_dim}-D latent)")
    st.session_state[SESSION_KEY] = session


def session() -> Session:
    """The Session the sidebar built in this run. None was built when a fresh server's first request
    was for a page (/latent_map): Streamlit then runs it in its pages-folder mode, skipping the entry
    file, until some run has called st.navigation. So remember where the visitor was going and switch
    to the entry file, whose st.navigation ends that mode; :func:`follow_deep_link` goes on."""
    if SESSION_KEY not in st.session_state:
        path = urlparse(st.context.url or "").path.strip("/")
        page = f"pages/{path.split('/')[-1]}.py" if path else None
        st.session_state[DEEP_LINK_KEY] = (page, {k: st.query_params.get_all(k) for k in st.query_params})
        st.switch_page(ENTRY_FILE)
    return st.session_state[SESSION_KEY]


def follow_deep_link() -> None:
    """In the entry file right after st.navigation: go on to the page a fresh server's first visitor
    asked for (see :func:`session`), with its query parameters, through the app's own navigation."""
    page, params = st.session_state.pop(DEEP_LINK_KEY, (None, None))
    if page in [p[0] for p in PAGES]:
        st.switch_page(page, query_params=params)


