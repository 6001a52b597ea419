"""Shared fixtures: the real offline sample (built by `make sample`) and the Milky Way image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GALAXY_VAE_SHARED", ROOT.parent / "shared" / "data"))
SAMPLE_H5 = ROOT / "data" / "gz1_sample.h5"
SAMPLE_DIR = SHARED / "gz1_small_eggochi"
MILKY_WAY = SHARED / "milky_way" / "milky-way-face-on.webp"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    if not SAMPLE_H5.is_file():
        pytest.fail(f"{SAMPLE_H5} is missing: build it with `make sample` (make test does this).")
    return SAMPLE_H5


@pytest.fixture(scope="session")
def sample(sample_path):
    """The real 6,664-galaxy sample as GalaxyData (read once per session)."""
    from galaxy_vae.hdf5 import open_dataset

    return open_dataset(sample_path)


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory) -> Path:
    """30 synthetic galaxies in 3 classes (tests/data/make_tiny.py): for behaviour that depends on
    the file format and the pipeline, not on what real galaxies look like. Needs no shared data."""
    from tests.data.make_tiny import write

    return write(tmp_path_factory.mktemp("tiny") / "tiny_galaxies.h5")


@pytest.fixture(scope="session")
def milky_way_path() -> Path:
    if not MILKY_WAY.is_file():
        pytest.fail(f"{MILKY_WAY} is missing: the shared data folder should sit beside the checkout.")
    return MILKY_WAY


@pytest.fixture(scope="session")
def frames_path() -> Path:
    """The sample's raw 423 px frames (what the similarity encoder trains on)."""
    folder = SAMPLE_DIR / "Imagenes"
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing: the shared data folder should sit beside the checkout.")
    return folder


@pytest.fixture(scope="session")
def small_sample_path(sample, tmp_path_factory) -> Path:
    """A real subset of the sample, 20 galaxies of each class (seeded), as its own dataset file:
    for trainings and evaluations that must take seconds."""
    import numpy as np

    from galaxy_vae.hdf5 import write_dataset

    rng = np.random.default_rng(0)
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(sample.labels == c), 20, replace=False)
                                   for c in range(len(sample.class_names))]))
    small = sample.take(rows)
    return write_dataset(tmp_path_factory.mktemp("small") / "small_sample.h5", small.images, small.labels,
                         small.ids, small.class_names, small.source)
