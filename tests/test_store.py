"""The persisted catalogue (galaxy_vae.store behind Catalogue.open): computed once, read back by a
new Catalogue and by a new process, rebuilt when the checkpoint or the dataset changes, and never
trusted when a stored file is damaged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from galaxy_vae import search
from galaxy_vae.catalogue import Catalogue, ModelSpace, PixelSpace
from galaxy_vae.checkpoints import load_checkpoint, save_checkpoint
from galaxy_vae.hdf5 import open_dataset, write_dataset
from galaxy_vae.models import build_model
from galaxy_vae.store import FOLDER, fingerprint

ROOT = Path(__file__).resolve().parents[1]
N = 160  # galaxies in the generated dataset: enough for every derived figure, encoded in a blink


def _write_data(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(N, 69, 69, 3), dtype=np.uint8)
    labels = np.arange(N) % 3
    return write_dataset(path, images, labels, [f"g{i}" for i in range(N)], ("A", "B", "C"), "generated")


def _write_model(path: Path, seed: int, name: str = "galaxy_vae") -> Path:
    torch.manual_seed(seed)
    model = build_model(name, {"n_classes": 3})
    return save_checkpoint(path, model, {"class_names": ["A", "B", "C"]})


@pytest.fixture
def files(tmp_path):
    return _write_data(tmp_path / "data" / "gen.h5", 0), _write_model(tmp_path / "ckpt" / "vae.safetensors", 0)


def _open(data_path: Path, ckpt_path: Path | None) -> Catalogue:
    space = PixelSpace() if ckpt_path is None else ModelSpace(load_checkpoint(ckpt_path))
    return Catalogue.open(open_dataset(data_path), space)


class _NoEncoding(ModelSpace):
    def embed(self, images, progress=False):
        raise AssertionError("the stored vectors should have been read, not computed")


def test_store_a_new_catalogue_reads_everything_back_without_encoding(files):
    data_path, ckpt_path = files
    first = _open(data_path, ckpt_path)
    names = first.persist_all()
    assert first.store is not None and first.store.rebuilt
    assert first.store.folder.parent.parent == data_path.parent / FOLDER
    assert {"vectors", "recon_errors", "kth_10"} <= set(first.store.manifest()["arrays"])
    again = Catalogue.open(open_dataset(data_path), _NoEncoding(load_checkpoint(ckpt_path)))
    assert not again.store.rebuilt
    np.testing.assert_array_equal(again.vectors, first.vectors)
    np.testing.assert_array_equal(again.map_xy, first.map_xy)
    np.testing.assert_array_equal(again.neighbour_distance(10), first.neighbour_distance(10))
    assert again.nn_distance_threshold == first.nn_distance_threshold
    assert again.recon_error_threshold == first.recon_error_threshold
    assert "reconstruction errors" in names


def test_store_survives_a_restart_in_a_new_process(files):
    data_path, ckpt_path = files
    first = _open(data_path, ckpt_path)
    first.persist_all()
    probe = ("import sys, numpy as np\n"
             "from galaxy_vae.catalogue import Catalogue, ModelSpace\n"
             "from galaxy_vae.checkpoints import load_checkpoint\n"
             "from galaxy_vae.hdf5 import open_dataset\n"
             "class Never(ModelSpace):\n"
             "    def embed(self, images, progress=False): raise SystemExit('encoded again')\n"
             "cat = Catalogue.open(open_dataset(sys.argv[1]), Never(load_checkpoint(sys.argv[2])))\n"
             "print(cat.store.rebuilt, repr(cat.nn_distance_threshold), float(cat.vectors.sum()))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe, str(data_path), str(ckpt_path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rebuilt, threshold, total = done.stdout.split()
    assert rebuilt == "False"
    assert float(threshold) == first.nn_distance_threshold
    assert float(total) == float(first.vectors.sum())


def test_store_is_rebuilt_after_the_checkpoint_changes(files):
    data_path, ckpt_path = files
    old = _open(data_path, ckpt_path)
    old.persist_all()
    _write_model(ckpt_path, seed=1)  # same path, other weights
    new = _open(data_path, ckpt_path)
    assert new.store.rebuilt
    assert not np.allclose(new.vectors, old.vectors)
    fresh = ModelSpace(load_checkpoint(ckpt_path)).embed(open_dataset(data_path).images)
    np.testing.assert_array_equal(new.vectors, fresh)
    assert "recon_errors" not in new.store.manifest()["arrays"]  # nothing of the old model survives


def test_store_is_rebuilt_after_the_dataset_changes(files):
    data_path, ckpt_path = files
    old = _open(data_path, ckpt_path)
    old.persist_all()
    _write_data(data_path, seed=5)  # same path and size, other pixels
    new = _open(data_path, ckpt_path)
    assert new.store.rebuilt
    fresh = ModelSpace(load_checkpoint(ckpt_path)).embed(open_dataset(data_path).images)
    np.testing.assert_array_equal(new.vectors, fresh)
    assert not np.array_equal(new.vectors, old.vectors)


def test_store_a_touched_file_with_the_same_contents_is_hashed_and_kept(files):
    data_path, ckpt_path = files
    _open(data_path, ckpt_path)
    st = data_path.stat()
    os.utime(data_path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    again = _open(data_path, ckpt_path)
    assert not again.store.rebuilt
    assert again.store.manifest()["sources"]["dataset"]["mtime_ns"] == data_path.stat().st_mtime_ns


def test_store_a_truncated_array_is_recomputed_not_trusted(files):
    data_path, ckpt_path = files
    first = _open(data_path, ckpt_path)
    first.persist_all()
    vectors = first.store.path("vectors")
    vectors.write_bytes(vectors.read_bytes()[:200])  # cut short: a crash mid-copy, a full disk
    kth = first.store.path("kth_10")
    raw = bytearray(kth.read_bytes())
    raw[-3] ^= 0xFF  # same size, one byte flipped
    kth.write_bytes(bytes(raw))
    again = _open(data_path, ckpt_path)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    np.testing.assert_array_equal(again.neighbour_distance(10), first.neighbour_distance(10))
    assert again.store.array("vectors") is not None  # written back intact
    assert again.store.array("kth_10") is not None


def test_store_a_damaged_manifest_starts_afresh(files):
    data_path, ckpt_path = files
    first = _open(data_path, ckpt_path)
    first.persist_all()
    first.store.manifest_path.write_text('{"format": "galaxy_vae-catalogue/1", "sour')
    again = _open(data_path, ckpt_path)
    assert again.store.rebuilt
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert json.loads(again.store.manifest_path.read_text())["arrays"]["vectors"]["shape"] == [N, 2]


def test_store_fingerprint_hashes_only_when_the_stamp_moved(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    known = fingerprint(f)
    fake = {**known, "sha256": "not-really"}
    assert fingerprint(f, fake)["sha256"] == "not-really"  # same stamp: trusted without reading
    f.write_bytes(b"abcd")
    assert fingerprint(f, fake)["sha256"] != "not-really"


def test_store_holds_the_vector_index_and_a_damaged_one_is_rebuilt(files, monkeypatch):
    data_path, _ = files
    monkeypatch.setattr(search, "ANN_MIN_ROWS", 100)  # a 64-D catalogue of 160 rows takes the approximate path
    ckpt = _write_model(data_path.parent / "similarity.safetensors", 0, "similarity")  # untrained, seeded
    first = _open(data_path, ckpt)
    assert first.index.method == search.ANN_DEFAULT and first.index.saved_path is None
    stored = first.store.file("index")
    assert stored is not None
    again = _open(data_path, ckpt)
    assert again.index.saved_path == stored  # read back, not rebuilt
    row = 7
    np.testing.assert_array_equal(again.query_rows([row], 5).indices, first.query_rows([row], 5).indices)
    stored.write_bytes(stored.read_bytes()[:100])
    third = _open(data_path, ckpt)
    assert third.index.saved_path is None and third.store.file("index") is not None  # rebuilt and stored
    np.testing.assert_array_equal(third.query_rows([row], 5).indices, first.query_rows([row], 5).indices)


def test_store_pixels_keep_thresholds_but_no_float_copy(files):
    data_path, _ = files
    cat = _open(data_path, None)
    threshold = cat.nn_distance_threshold
    assert "vectors" not in cat.store.manifest()["arrays"]
    assert _open(data_path, None).store.value("nn_distance_threshold") == threshold


def test_store_in_memory_data_has_no_store(files):
    data_path, ckpt_path = files
    data = open_dataset(data_path)
    tiled = type(data)(images=data.images, labels=data.labels, class_names=data.class_names, ids=data.ids)
    assert Catalogue.open(tiled, ModelSpace(load_checkpoint(ckpt_path))).store is None


def test_store_embed_command_writes_the_catalogue_the_app_opens(files, capsys):
    from galaxy_vae.cli import main

    data_path, ckpt_path = files
    assert main(["embed", "--data", str(data_path), "--checkpoint", str(ckpt_path)]) == 0
    out = capsys.readouterr().out
    assert "rebuilt" in out and str(data_path.parent / FOLDER) in out
    opened = Catalogue.open(open_dataset(data_path), _NoEncoding(load_checkpoint(ckpt_path)))
    assert not opened.store.rebuilt and opened.store.value("recon_error_threshold") is not None
    assert main(["embed", "--data", str(data_path), "--checkpoint", str(ckpt_path), "--pixels"]) == 0
    out = capsys.readouterr().out
    assert "checked and completed" in out and "pixels (64x64x3)" in out
    assert _open(data_path, None).store.value("nn_distance_threshold") is not None


def test_store_mapped_images_equal_the_file_and_follow_it(files):
    data_path, _ = files
    plain, mapped = open_dataset(data_path), open_dataset(data_path, mapped=True)
    assert isinstance(mapped.images, np.memmap) and not mapped.images.flags.writeable
    np.testing.assert_array_equal(mapped.images, plain.images)
    np.testing.assert_array_equal(mapped.ids, plain.ids)
    _write_data(data_path, seed=9)  # the dataset changes: the copy is made again
    np.testing.assert_array_equal(open_dataset(data_path, mapped=True).images, open_dataset(data_path).images)


def test_store_mapped_challenge_subset_is_the_in_memory_one(tmp_path):
    from galaxy_vae.data import GALAXY10_SDSS_CLASSES
    from galaxy_vae.hdf5 import open_for_search

    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, size=(90, 69, 69, 3), dtype=np.uint8)
    path = write_dataset(tmp_path / "g10.h5", images, np.arange(90) % 10, [f"x{i}" for i in range(90)],
                         GALAXY10_SDSS_CLASSES, "generated")
    plain, mapped = open_for_search(path), open_for_search(path, mapped=True)
    assert isinstance(mapped.images, np.memmap) and len(mapped) == 54
    np.testing.assert_array_equal(mapped.images, plain.images)
    np.testing.assert_array_equal(mapped.labels, plain.labels)
    np.testing.assert_array_equal(mapped.original_labels, plain.original_labels)
    assert mapped.class_names == plain.class_names and mapped.path == plain.path


PIXEL_PROBE = r"""
import json, sys
import numpy as np
from galaxy_vae.catalogue import Catalogue, PixelSpace
from galaxy_vae.hdf5 import open_dataset

def status(key):
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(key))

data = open_dataset(sys.argv[1], mapped=True)
base = status("VmRSS:")
cat = Catalogue(data, PixelSpace())
found = cat.query_rows([0, 1, 2], 12)
print(json.dumps({"peak_mb": status("VmHWM:") - base, "now_mb": status("VmRSS:") - base,
                  "images_mb": data.images.nbytes / 2**20, "k": int(found.indices.shape[1])}))
"""


def test_store_pixel_search_over_mapped_images_holds_no_float_copy(sample_path, tmp_path):
    """Pixel search of the real sample (6,664 galaxies: a float copy would be 320 MiB, the images
    91 MiB) in a fresh process: the peak stays under half the float copy (one block of floats at a
    time) and what stays resident after is under half the images (pages dropped after reading)."""
    link = tmp_path / "sample.h5"
    link.symlink_to(sample_path)
    open_dataset(link, mapped=True)  # the mapped copy made beforehand, in this process
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PIXEL_PROBE, str(link)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["k"] == 12
    float_copy_mb = got["images_mb"] * (64 * 64) / (69 * 69) * 4
    assert got["peak_mb"] < float_copy_mb / 2, got
    assert got["now_mb"] < got["images_mb"] / 2, got


def test_store_the_app_draws_the_map_from_the_persisted_catalogue(sample_path, tmp_path, monkeypatch):
    """A restarted server (Streamlit's caches cleared) draws the map page from what the first one
    stored beside the dataset, without encoding a galaxy."""
    import streamlit as st
    from apptest import open_page

    from galaxy_vae.paths import DATA_ENV

    (tmp_path / sample_path.name).symlink_to(sample_path)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    open_page("latent_map")
    assert (tmp_path / FOLDER / sample_path.stem / "images_69.npy").is_file()
    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setattr(ModelSpace, "embed", _NoEncoding.embed)
    at = open_page("latent_map")
    assert at.get("plotly_chart"), "no map drawn"
    st.cache_resource.clear()  # later tests build their own, with the real embed
