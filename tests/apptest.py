"""The app as a user starts it, for AppTest page tests: from streamlit_app.py (its navigation and
shared sidebar), then on to a page with switch_page. Every test opens its own AppTest, so no test
depends on what another left behind; the heavy objects (datasets, catalogues) are shared through
Streamlit's resource cache, which lives for the whole test process."""

from __future__ import annotations

from conftest import ROOT
from streamlit.testing.v1 import AppTest

from galaxy_vae.app import UNEXPECTED

ENTRY = str(ROOT / "streamlit_app.py")


def open_page(page: str, *, model: str | None = None, params: dict | None = None, state: dict | None = None,
              timeout: float = 300, check: bool = True) -> AppTest:
    """A fresh app showing ``pages/<page>.py`` after one run. ``model``: the sidebar's model choice
    (a file name in the checkpoints folder); ``params``: URL query parameters; ``state``: session
    state set before the first run. With ``check``, the run must go through (:func:`assert_ok`)."""
    at = AppTest.from_file(ENTRY, default_timeout=timeout)
    if model:
        at.session_state["model"] = model
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.query_params.update(params or {})  # a link's parameters are there from the first run
    at.run()  # the entry file first (the home page), as a visitor arrives
    at.query_params.update(params or {})  # (AppTest's page switch drops them: the link names the page)
    at.switch_page(f"pages/{page}.py")
    at.run()
    if check:
        assert_ok(at)
    return at


def assert_ok(at: AppTest) -> None:
    """The run raised nothing and the page guard caught nothing (its traceback is in the log)."""
    assert not at.exception, at.exception
    caught = [e.value for e in at.error if e.value.startswith(UNEXPECTED)]
    assert not caught, caught
