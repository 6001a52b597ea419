"""Download the published Galaxy10 datasets, checked against their sha256.

Two steps, kept apart so the first is tested without a network:

    what is on disk + published hash --decide--> "download" | "reuse" | "refuse"
    "download" --pooch--> temporary file beside the target --hash ok--> moved into place

pooch streams into a temporary file in the target folder, checks the hash, and only then moves
it to the target name; on a hash mismatch, a dropped connection or Ctrl-C the temporary file is
deleted. So a file under the target name is always a complete, verified copy.

Where files go: ``--dir``, else ``$GALAXY_VAE_DATA``, else ``data/`` (:func:`galaxy_vae.paths.data_dir`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pooch

from galaxy_vae.errors import FetchError
from galaxy_vae.paths import DATA_ENV, data_dir

log = logging.getLogger(__name__)

DOWNLOAD, REUSE, REFUSE = "download", "reuse", "refuse"


@dataclass(frozen=True)
class Remote:
    """A published file: where it lives, its sha256, and the name it gets locally."""

    title: str
    url: str
    sha256: str  # lowercase hex, as published
    fname: str


# Galaxy10 (Leung & Bovy, astroNN), as published on Zenodo.
REGISTRY: dict[str, Remote] = {
    "galaxy10": Remote(
        title="Galaxy10 SDSS (21,785 galaxies, 69x69)",
        url="https://zenodo.org/records/10844811/files/Galaxy10.h5",
        sha256="969a6b1cefcc36e09fffa86febd2f699a4aa19b837ba0427f01b0bc6ded458af",
        fname="Galaxy10.h5",
    ),
    "galaxy10-decals": Remote(
        title="Galaxy10 DECaLS (17,736 galaxies, 256x256)",
        url="https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5",
        sha256="19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571",
        fname="Galaxy10_DECals.h5",
    ),
}

OFFLINE_FIX = (
    "Without a network: build the offline sample with `make sample`, or import your own cutouts "
    "with `python -m galaxy_vae import DIR --labels CSV --out FILE.h5`."
)


@dataclass(frozen=True)
class FetchResult:
    path: Path  # the verified file
    action: str  # DOWNLOAD or REUSE


def decide(existing_sha256: str | None, known_sha256: str, *, replace: bool = False) -> str:
    """What to do given the hash of the file already there (None: no file). Pure.

    A file with another hash is never overwritten silently: it may be the user's own copy (an
    older Galaxy10 release, an edited file), so that needs ``replace=True``.
    """
    if existing_sha256 is None:
        return DOWNLOAD
    if existing_sha256.lower() == known_sha256.lower():
        return REUSE
    return DOWNLOAD if replace else REFUSE


def fetch_dataset(name: str, directory: str | Path | None = None, *,
                  registry: Mapping[str, Remote] = REGISTRY, replace: bool = False,
                  progress: bool = True, timeout: float = 60.0) -> FetchResult:
    """Make sure ``registry[name]`` is in the download folder, verified; download it if needed.

    Raises :class:`FetchError` for an unknown name, a different file in the way, no network, an
    HTTP error, a dropped connection or a hash mismatch; none of these leaves a file behind.
    """
    if name not in registry:
        raise FetchError(f"Unknown dataset {name!r}", expected="one of " + ", ".join(registry),
                         found=repr(name), fix="Pick a name from the list.")
    remote = registry[name]
    target = data_dir(directory) / remote.fname
    if target.exists() and not target.is_file():
        raise FetchError(f"Cannot save {remote.title} as {target}", expected="a file path",
                         found="a folder with that name", fix="Move it away or choose --dir.")
    existing = pooch.file_hash(str(target)) if target.is_file() else None
    action = decide(existing, remote.sha256, replace=replace)
    if action == REUSE:
        log.info("%s is already there and matches sha256 %s", target, remote.sha256)
        return FetchResult(target, REUSE)
    if action == REFUSE:
        raise FetchError(f"{target} is not the published {remote.title}",
                         expected=f"sha256 {remote.sha256}", found=f"sha256 {existing}",
                         fix="Move or delete that file, or run again with --replace to download "
                             "the published file over it.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"Cannot create the download folder {target.parent}", expected="a writable folder",
                         found=f"{type(exc).__name__}: {exc}",
                         fix=f"Choose another with --dir or ${DATA_ENV}.") from exc
    _download(remote, target, progress=progress, timeout=timeout)
    return FetchResult(target, DOWNLOAD)


def _download(remote: Remote, target: Path, *, progress: bool, timeout: float) -> None:
    """pooch download into ``target`` (temporary file, hash check, move); errors -> FetchError."""
    import requests

    host = urlparse(remote.url).netloc or remote.url
    what = f"Cannot download {remote.title} from {remote.url}"
    log.info("downloading %s to %s", remote.url, target)
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    try:
        pooch.retrieve(remote.url, known_hash=f"sha256:{remote.sha256}", fname=target.name,
                       path=target.parent, downloader=downloader)
    except ValueError as exc:  # pooch's hash mismatch; the download was already deleted
        got = re.search(r"but got (\w+)", str(exc))
        raise FetchError(f"{what}: the file that arrived is not the published one",
                         expected=f"sha256 {remote.sha256}",
                         found=f"sha256 {got.group(1)}" if got else str(exc),
                         fix="Nothing was kept. Run the command again; if it keeps happening, the "
                             "server is sending a different file (check the URL).") from exc
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise FetchError(what, expected="HTTP 200", found=f"HTTP {status}",
                         fix="Check the URL or try again later. " + OFFLINE_FIX) from exc
    except requests.exceptions.ConnectionError as exc:  # refused, DNS failure, connect timeout
        raise FetchError(f"{what}: no connection to {host} (offline?)",
                         expected=f"a network connection to {host}", found=_reason(exc),
                         fix=OFFLINE_FIX) from exc
    except requests.exceptions.Timeout as exc:
        raise FetchError(f"{what}: the server stopped sending", expected=f"data within {timeout:g} s",
                         found="a stalled connection", fix="Nothing was kept. Try again later. " + OFFLINE_FIX) from exc
    except requests.exceptions.RequestException as exc:  # e.g. connection dropped mid-transfer
        raise FetchError(f"{what}: the download was interrupted", expected="the complete file",
                         found=_reason(exc), fix="Nothing was kept. Run the command again.") from exc
    assert target.is_file(), target  # pooch moved the verified file into place


def _reason(exc: Exception) -> str:
    """The useful end of a requests error: 'Connection refused', 'Name or service not known', ..."""
    text = str(exc)
    cut = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
    if cut:
        return f"the connection closed after {cut.group(1)} bytes, {cut.group(2)} more were expected"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip()
    return f"{type(exc).__name__}: {text[:200]}"
