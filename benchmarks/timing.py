"""Server time of every Streamlit script run, recorded from outside the app.

The app carries no clocks. :func:`install` connects a receiver to the start and stop events every
``ScriptRunner`` emits (the server's and AppTest's alike), so each run -- a whole page run with the
entry file, or a fragment rerun alone -- appends one JSON line to a file:

    {"page": "latent_map", "fragment": false, "ms": 41.7}

``page`` is the page's URL path ("" for the default page); ``fragment`` is true for a fragment
rerun (e.g. a generator slider move). A server is started instrumented with
``python -m benchmarks.serve TIMINGS.jsonl streamlit_app.py [streamlit flags]``.

ScriptRunner's events are Streamlit internals: if a release renames them, :func:`install` raises
at once rather than recording nothing.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

_lock = threading.Lock()


def install(path: str | Path) -> None:
    """Record every script run of this process to ``path`` (JSONL, appended)."""
    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner, ScriptRunnerEvent

    path = Path(path)
    stops = {ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS, ScriptRunnerEvent.FRAGMENT_STOPPED_WITH_SUCCESS}
    started: dict[int, tuple[float, bool]] = {}  # id(runner) -> (start, fragment run?)

    def on_event(runner, event, **kwargs) -> None:
        if event == ScriptRunnerEvent.SCRIPT_STARTED:
            started[id(runner)] = (time.perf_counter(), bool(kwargs.get("fragment_ids_this_run")))
        elif event in stops and id(runner) in started:
            start, fragment = started.pop(id(runner))
            manager = runner._pages_manager
            info = manager.get_pages().get(manager.current_page_script_hash, {})
            record = {"page": info.get("url_pathname", ""), "fragment": fragment,
                      "ms": (time.perf_counter() - start) * 1e3}
            with _lock, open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    original = ScriptRunner.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.on_event.connect(on_event, weak=False)

    ScriptRunner.__init__ = __init__


def read(path: str | Path, page: str, fragment: bool = False) -> list[float]:
    """Milliseconds of the recorded runs of ``page`` (fragment reruns or whole runs), in order."""
    path = Path(path)
    if not path.is_file():
        return []
    records = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return [r["ms"] for r in records if r["page"] == page and r["fragment"] == fragment]
