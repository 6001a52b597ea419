"""Streamlit glue for the pages: the only part of galaxy_vae that imports streamlit.

- :mod:`.cache`      cached loaders and the Session (dataset, model, similarity and their catalogues)
- :mod:`.navigation` the page list, the shared sidebar, the deep-link hop
- :mod:`.widgets`    galleries, uploads, a query's summary, the page guard

State is Streamlit's own: the shared widgets are drawn once per run by the entry file, page
widgets keep their values across pages with ``persist_state="session"`` and, where a link should
reproduce the view, live in the URL with ``bind="query-params"``. Pages use the names below.
"""

import os

# Before torch loads OpenMP: script runs are new threads, and OpenMP teams started in them spin on
# a busy machine, doubling a slider move's time. A user's own setting is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch

# A slider move decodes one latent: handing that to OpenMP threads costs more than the work.
# Concurrent sessions still use every core, each script run being its own thread.
torch.set_num_threads(1)

from galaxy_vae.app.cache import Session, stamp  # noqa: E402
from galaxy_vae.app.navigation import PAGES, follow_deep_link, session, sidebar  # noqa: E402
from galaxy_vae.app.widgets import (  # noqa: E402
    UNEXPECTED,
    catalogue_gallery,
    decoded_beside_nearest,
    detail_controls,
    gallery,
    guard,
    guarded,
    look_up,
    paged_gallery,
    prepared_file,
    realism_panel,
    selection_panel,
    show_query,
    upload,
)

__all__ = ["PAGES", "UNEXPECTED", "Session", "catalogue_gallery", "decoded_beside_nearest", "detail_controls",
           "follow_deep_link", "gallery", "guard", "guarded", "look_up", "paged_gallery", "prepared_file",
           "realism_panel", "selection_panel", "session", "show_query", "sidebar", "stamp", "upload"]
