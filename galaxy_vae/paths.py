"""Where galaxy_vae finds and writes its files: the one module that reads locations from the
environment, and the one way a file is written (atomically).

    datasets      --dir flag, else $GALAXY_VAE_DATA, else data/ of the checkout (or of the working
                  directory when galaxy_vae is installed rather than checked out)
    checkpoints   $GALAXY_VAE_CHECKPOINTS, else checkpoints/ of the checkout (or working directory)
    Milky Way     $GALAXY_VAE_MILKY_WAY, else the shared data folder beside the checkout
    raw frames    $GALAXY_VAE_FRAMES, else the sample's 423 px frames in the shared data folder
                  (what the similarity encoder trains on and ``evaluate --robustness`` re-cuts)
    large map     $GALAXY_VAE_LARGE_MAP, else figures.LARGE_MAP: galaxies above which the app
                  draws its maps compact (tests lower it to try that path on the sample)

Each lookup takes an optional ``environ`` mapping so it is tested without touching os.environ.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

DATA_ENV = "GALAXY_VAE_DATA"
CHECKPOINTS_ENV = "GALAXY_VAE_CHECKPOINTS"
MILKY_WAY_ENV = "GALAXY_VAE_MILKY_WAY"
FRAMES_ENV = "GALAXY_VAE_FRAMES"
LARGE_MAP_ENV = "GALAXY_VAE_LARGE_MAP"

SAMPLE_NAME = "gz1_sample.h5"  # what `make sample` builds: the app's and CLI's default dataset
DEFAULT_CHECKPOINT_NAME = "detail_vae.safetensors"  # the app's default model: the map with a detail code
DENSE_AE_NAME = "seed_dense_ae.safetensors"  # the seed's 64-D autoencoder, a similarity of its own
ENCODER_NAME = "similarity.safetensors"  # the similarity encoder: every neighbour search's default
MILKY_WAY_NAME = "milky-way-face-on.webp"

_PACKAGE_PARENT = Path(__file__).resolve().parents[1]


def checkout() -> Path | None:
    """The source checkout galaxy_vae runs from, or None when it is installed as a package."""
    return _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").is_file() else None


def _base() -> Path:
    return checkout() or Path.cwd()


def _env(name: str, environ: Mapping[str, str] | None) -> Path | None:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return Path(value).expanduser() if value else None


def data_dir(directory: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The datasets folder: ``directory`` if given, else $GALAXY_VAE_DATA, else data/."""
    if directory:
        return Path(directory).expanduser()
    return _env(DATA_ENV, environ) or _base() / "data"


def default_dataset(environ: Mapping[str, str] | None = None) -> Path:
    """The offline sample in the datasets folder (it may not exist yet: `make sample` builds it)."""
    return data_dir(None, environ) / SAMPLE_NAME


def checkpoint_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The checkpoints folder: $GALAXY_VAE_CHECKPOINTS, else checkpoints/."""
    return _env(CHECKPOINTS_ENV, environ) or _base() / "checkpoints"


def default_checkpoint(environ: Mapping[str, str] | None = None) -> Path:
    """The app's and CLI's default model file."""
    return checkpoint_dir(environ) / DEFAULT_CHECKPOINT_NAME


def dense_ae_checkpoint(environ: Mapping[str, str] | None = None) -> Path | None:
    """The seed's 64-D autoencoder in the checkpoints folder (a similarity of its own); None if absent."""
    path = checkpoint_dir(environ) / DENSE_AE_NAME
    return path if path.is_file() else None


def encoder_checkpoint(environ: Mapping[str, str] | None = None) -> Path | None:
    """The similarity encoder in the checkpoints folder; None if absent."""
    path = checkpoint_dir(environ) / ENCODER_NAME
    return path if path.is_file() else None


def large_map_rows(default: int, environ: Mapping[str, str] | None = None) -> int:
    """Galaxies above which the app draws its maps compact: $GALAXY_VAE_LARGE_MAP, else ``default``."""
    value = (os.environ if environ is None else environ).get(LARGE_MAP_ENV, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(f"{LARGE_MAP_ENV} must be a whole number of galaxies; found {value!r}. "
                         f"Unset it to use the default ({default:,}).")
    return int(value)


def shared_data() -> Path:
    """The shared data folder beside the checkout (real SDSS frames, the Milky Way)."""
    return _base().parent / "shared" / "data"


def milky_way_default() -> Path:
    """Where the shared data folder keeps NASA's face-on Milky Way, beside the checkout."""
    return shared_data() / "milky_way" / MILKY_WAY_NAME


def frames_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder of raw frames (<objID>.jpeg, 423 px): $GALAXY_VAE_FRAMES, else the offline sample's
    in the shared data folder; None if absent."""
    path = _env(FRAMES_ENV, environ) or shared_data() / "gz1_small_eggochi" / "Imagenes"
    return path if path.is_dir() else None


def milky_way_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """NASA's face-on Milky Way ($GALAXY_VAE_MILKY_WAY, else the shared folder); None if absent."""
    path = _env(MILKY_WAY_ENV, environ) or milky_way_default()
    return path if path.is_file() else None


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target``; renamed onto it when the block succeeds, deleted
    when it fails, so a reader never sees half a file under the target name.

        with atomic_path("data/mine.h5") as tmp:
            write(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
