"""Fetch: the download decision without a network, and real downloads from a server on 127.0.0.1.

The server serves a small file, in full or cut off after its headers promised more; nothing here
touches the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from galaxy_vae import fetch
from galaxy_vae.errors import FetchError
from galaxy_vae.fetch import DOWNLOAD, REFUSE, REUSE, Remote, decide, fetch_dataset

PAYLOAD = bytes(range(256)) * 400  # 100 KiB: several chunks, so a cut lands mid-transfer
GOOD = hashlib.sha256(PAYLOAD).hexdigest()
WRONG = hashlib.sha256(b"something else").hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/full sends the payload; /cut promises all of it, sends a third, and hangs up."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in ("/full", "/cut"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        body = PAYLOAD if self.path == "/full" else PAYLOAD[: len(PAYLOAD) // 3]
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture()
def server(monkeypatch):
    """Base URL of a local HTTP server; ``.requests`` lists the paths it was asked for."""
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _registry(url: str, sha256: str = GOOD) -> dict[str, Remote]:
    return {"tiny": Remote(title="tiny test file", url=url, sha256=sha256, fname="tiny.h5")}


def _only_target(folder: Path) -> list[str]:
    """Every file in the download folder (temporary files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_decide_download_reuse_refuse():
    assert decide(None, GOOD) == DOWNLOAD
    assert decide(GOOD, GOOD) == REUSE
    assert decide(GOOD.upper(), GOOD) == REUSE
    assert decide(WRONG, GOOD) == REFUSE
    assert decide(WRONG, GOOD, replace=True) == DOWNLOAD
    assert decide(None, GOOD, replace=True) == DOWNLOAD


def test_fetch_registry_has_published_urls_and_hashes():
    sdss, decals = fetch.REGISTRY["galaxy10"], fetch.REGISTRY["galaxy10-decals"]
    assert sdss.url == "https://zenodo.org/records/10844811/files/Galaxy10.h5"
    assert sdss.sha256 == "969a6b1cefcc36e09fffa86febd2f699a4aa19b837ba0427f01b0bc6ded458af"
    assert decals.url == "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
    assert decals.sha256 == "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"


def test_fetch_right_hash_puts_file_in_place(server, tmp_path):
    httpd, base = server
    result = fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/full"), progress=False)
    assert result.action == DOWNLOAD
    assert result.path == tmp_path / "tiny.h5"
    assert result.path.read_bytes() == PAYLOAD
    assert _only_target(tmp_path) == ["tiny.h5"]  # no temporary file left over
    assert httpd.requests == ["/full"]


def test_fetch_env_var_chooses_folder(server, tmp_path, monkeypatch):
    _, base = server
    monkeypatch.setenv("GALAXY_VAE_DATA", str(tmp_path / "cache"))
    result = fetch_dataset("tiny", registry=_registry(f"{base}/full"), progress=False)
    assert result.path == tmp_path / "cache" / "tiny.h5"
    assert result.path.read_bytes() == PAYLOAD


def test_fetch_wrong_hash_raises_and_leaves_nothing(server, tmp_path):
    _, base = server
    with pytest.raises(FetchError) as err:
        fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/full", sha256=WRONG), progress=False)
    assert err.value.expected == f"sha256 {WRONG}"
    assert err.value.found == f"sha256 {GOOD}"
    assert "not the published one" in str(err.value)
    assert _only_target(tmp_path) == []


def test_fetch_dropped_connection_leaves_no_file(server, tmp_path):
    _, base = server
    with pytest.raises(FetchError) as err:
        fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/cut"), progress=False)
    assert "interrupted" in str(err.value) and "more were expected" in err.value.found
    assert _only_target(tmp_path) == []


def test_fetch_partial_file_never_passes_as_complete(server, tmp_path):
    """A cut-off copy under the target name (as a naive downloader leaves) is refused, not reused."""
    httpd, base = server
    (tmp_path / "tiny.h5").write_bytes(PAYLOAD[: len(PAYLOAD) // 3])
    with pytest.raises(FetchError) as err:
        fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/full"), progress=False)
    assert err.value.expected == f"sha256 {GOOD}" and httpd.requests == []


def test_fetch_good_file_reused_without_download(server, tmp_path):
    httpd, base = server
    (tmp_path / "tiny.h5").write_bytes(PAYLOAD)
    result = fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/full"), progress=False)
    assert result.action == REUSE
    assert httpd.requests == []


def test_fetch_different_file_refused_then_replaced(server, tmp_path):
    httpd, base = server
    mine = tmp_path / "tiny.h5"
    mine.write_bytes(b"my own copy")
    with pytest.raises(FetchError, match="--replace"):
        fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/full"), progress=False)
    assert mine.read_bytes() == b"my own copy" and httpd.requests == []
    result = fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/full"), replace=True, progress=False)
    assert result.action == DOWNLOAD and mine.read_bytes() == PAYLOAD


def test_fetch_failed_replace_keeps_existing_file(server, tmp_path):
    _, base = server
    mine = tmp_path / "tiny.h5"
    mine.write_bytes(b"my own copy")
    with pytest.raises(FetchError):
        fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/cut"), replace=True, progress=False)
    assert _only_target(tmp_path) == ["tiny.h5"] and mine.read_bytes() == b"my own copy"


def test_fetch_offline_says_so_and_points_at_import(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with socket.socket() as s:  # a port nothing listens on: bind, read the number, close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError) as err:
        fetch_dataset("tiny", tmp_path, registry=_registry(f"http://127.0.0.1:{port}/full"),
                      progress=False, timeout=5)
    message = str(err.value)
    assert "offline" in message and "Connection refused" in message
    assert "python -m galaxy_vae import" in message and "make sample" in message
    assert _only_target(tmp_path) == []


def test_fetch_http_error_is_reported(server, tmp_path):
    _, base = server
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_dataset("tiny", tmp_path, registry=_registry(f"{base}/missing"), progress=False)
    assert _only_target(tmp_path) == []


def test_fetch_unknown_name_lists_choices(tmp_path):
    with pytest.raises(FetchError, match="galaxy10, galaxy10-decals"):
        fetch_dataset("galaxy11", tmp_path)


def test_fetch_cli_names_match_registry_and_refusal_is_one_message(tmp_path, capsys):
    from galaxy_vae.cli import build_parser, main

    for name in fetch.REGISTRY:  # every registry name is accepted on the command line
        assert build_parser().parse_args(["fetch", name]).dataset == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fetch", "galaxy11"])
    capsys.readouterr()
    (tmp_path / "Galaxy10.h5").write_bytes(b"an older copy")  # refused before any network access
    assert main(["fetch", "galaxy10", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--replace" in err and fetch.REGISTRY["galaxy10"].sha256 in err
    assert (tmp_path / "Galaxy10.h5").read_bytes() == b"an older copy"
