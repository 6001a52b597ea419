"""The data layer: the real sample, crops and resizing, class subsets, splits, malformed files, info.

Behaviour that depends on galaxies uses the real sample (fixture ``sample``); behaviour that
depends on the file format uses tiny generated HDF5 files in ``tmp_path``.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, SAMPLE_DIR

from galaxy_vae.data import (
    CHALLENGE_KEEP,
    GALAXY10_DECALS_CLASSES,
    GALAXY10_SDSS_CLASSES,
    GZ1_SAMPLE_CLASSES,
    center_crop,
    challenge_subset,
    model_view,
    select_classes,
    stratified_split,
)
from galaxy_vae.errors import DataError
from galaxy_vae.hdf5 import describe, open_dataset, resize_images, write_dataset

SAMPLE_COUNTS = {"Elliptical": 4645, "Spiral CW": 414, "Spiral ACW": 436, "Edge-on": 998,
                 "Don't know": 56, "Merger": 115}


@pytest.fixture(scope="module")
def sample_labels_csv() -> dict[str, int]:
    """objID -> Galaxy Zoo 1 class, straight from the sample's label CSV."""
    with open(SAMPLE_DIR / "smallCSV_class.csv", newline="") as f:
        return {row["OBJID"]: int(row["CLASS"]) for row in csv.DictReader(f)}


def _write_h5(path: Path, **datasets) -> Path:
    """A tiny HDF5 file with exactly the given datasets (no attributes): astroNN's layout."""
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def _galaxy10_like(tmp_path: Path, n: int = 30, size: int = 69) -> tuple[Path, np.ndarray, np.ndarray]:
    """An astroNN-style Galaxy10 file: ``images`` and ``ans`` only, every class present."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    labels = (np.arange(n) * 7) % 10  # all 10 classes, shuffled order
    return _write_h5(tmp_path / f"galaxy10_{size}.h5", images=images, ans=labels.astype(np.uint8)), images, labels


# --- the real sample ---------------------------------------------------------------------------

def test_data_sample_counts_match_label_csv(sample, sample_labels_csv):
    expected = Counter(sample_labels_csv.values())
    assert sample.class_names == GZ1_SAMPLE_CLASSES
    assert sample.counts() == {GZ1_SAMPLE_CLASSES[c]: expected[c] for c in range(6)} == SAMPLE_COUNTS
    assert len(sample) == len(sample_labels_csv) == 6664


def test_data_sample_ids_match_files_and_labels(sample, sample_labels_csv):
    stems = {p.stem for p in (SAMPLE_DIR / "Imagenes").iterdir()}
    assert set(sample.ids) == stems
    assert len(set(sample.ids)) == len(sample)  # no galaxy twice
    assert [sample_labels_csv[i] for i in sample.ids] == sample.labels.tolist()


def test_data_sample_images_look_like_galaxies(sample):
    assert sample.images.dtype == np.uint8 and sample.images.shape == (6664, 69, 69, 3)
    ring = np.ones((69, 69), bool)
    ring[5:-5, 5:-5] = False  # the outer 5 px of the frame: sky
    stds, centres, borders = [], [], []
    for start in range(0, len(sample), 1024):  # float per chunk, never the whole set
        grey = sample.images[start:start + 1024].astype(np.float32).mean(axis=-1)  # (B, 69, 69)
        stds.append(grey.reshape(len(grey), -1).std(axis=1))
        centres.append(grey[:, 29:40, 29:40].mean(axis=(1, 2)))
        borders.append(grey[:, ring].mean(axis=1))
    std, centre, border = (np.concatenate(v) for v in (stds, centres, borders))
    assert std.min() > 2.0  # no blank or constant cutouts
    assert centre.mean() > 5 * border.mean()  # a bright galaxy on dark sky
    assert (centre > border).mean() > 0.99


def test_data_sample_opens_fast_enough_to_be_read_whole(sample_path):
    import time

    start = time.perf_counter()
    data = open_dataset(sample_path)
    assert len(data) == 6664
    assert time.perf_counter() - start < 5.0  # target 1 s; slack for a busy 2-core machine


# --- crops and resizing ------------------------------------------------------------------------

def test_data_center_crop_picks_exact_central_pixels():
    # Each pixel holds its own (row, column), so the crop says exactly where it came from.
    rows, cols = np.meshgrid(np.arange(69), np.arange(69), indexing="ij")
    images = np.stack([rows, cols, rows * 0], axis=-1)[None].repeat(2, axis=0)  # (2, 69, 69, 3)
    crop = center_crop(images, 64)
    assert crop.shape == (2, 64, 64, 3)
    assert crop[0, 0, 0, :2].tolist() == [2, 2]  # (69 - 64) // 2 = 2 px trimmed top and left
    assert crop[0, -1, -1, :2].tolist() == [65, 65]  # 3 px trimmed bottom and right
    assert np.shares_memory(crop, images)  # a view: no copy of the dataset
    with pytest.raises(DataError, match="at least 70x70"):
        center_crop(images, 70)


def test_data_model_view_block_averages_64_to_32():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 69, 69, 3), dtype=np.uint8)
    view = model_view(images, crop=64, size=32)
    assert view.shape == (3, 32, 32, 3) and view.dtype == np.uint8
    crop = images[:, 2:66, 2:66].astype(np.int64)
    for y, x in [(0, 0), (5, 17), (31, 31)]:
        block = crop[:, 2 * y:2 * y + 2, 2 * x:2 * x + 2]  # (3, 2, 2, 3)
        assert np.abs(view[:, y, x].astype(np.int64) - block.sum(axis=(1, 2)) / 4).max() <= 0.5
    flat = np.full((1, 69, 69, 3), 77, np.uint8)
    assert (model_view(flat, 64, 32) == 77).all()
    assert model_view(images).shape == (3, 64, 64, 3)
    with pytest.raises(DataError, match="dividing 64"):
        model_view(images, 64, 30)


def test_data_model_view_of_real_galaxies_keeps_them_centred(sample):
    view = model_view(sample.images[:64], 64, 32).astype(np.float32).mean(axis=-1)  # (64, 32, 32)
    assert view.shape == (64, 32, 32)
    assert view[:, 12:20, 12:20].mean() > 3 * view[:, :4].mean()


def test_data_resize_256_to_69_by_area():
    images = np.zeros((2, 256, 256, 3), np.uint8)
    images[:, :, :128] = 200  # left half bright
    out = resize_images(images, 69)
    assert out.shape == (2, 69, 69, 3) and out.dtype == np.uint8
    assert (out[:, :, :34] == 200).all() and (out[:, :, 35:] == 0).all()
    assert 0 < out[0, 0, 34, 0] < 200  # the column straddling the edge is a blend


def test_data_decals_sized_file_opens_at_69_with_decals_names(tmp_path):
    path, images, labels = _galaxy10_like(tmp_path, n=10, size=256)
    data = open_dataset(path)
    assert data.images.shape == (10, 69, 69, 3)
    assert data.class_names == GALAXY10_DECALS_CLASSES
    assert np.array_equal(data.images, resize_images(images, 69))
    assert np.array_equal(open_dataset(path, size=256).images, images)


# --- files: round trip, astroNN layout, malformed ----------------------------------------------

def test_data_astronn_layout_loads_unchanged_with_galaxy10_names(tmp_path):
    path, images, labels = _galaxy10_like(tmp_path)
    data = open_dataset(path)
    assert np.array_equal(data.images, images) and data.labels.tolist() == labels.tolist()
    assert data.class_names == GALAXY10_SDSS_CLASSES
    assert data.ids.tolist() == [str(i) for i in range(30)]
    assert data.source == "Galaxy10 SDSS (astroNN)"
    with h5py.File(path) as f:  # opening never writes to the file
        assert sorted(f.keys()) == ["ans", "images"] and len(f.attrs) == 0


def test_data_write_then_open_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(4, 69, 69, 3), dtype=np.uint8)
    path = write_dataset(tmp_path / "sub" / "mine.h5", images, np.array([0, 1, 1, 0]),
                         ["a1", "b2", "c3", "d4"], ["round", "spiral"], "my telescope")
    data = open_dataset(path)
    assert np.array_equal(data.images, images)
    assert data.labels.tolist() == [0, 1, 1, 0] and data.ids.tolist() == ["a1", "b2", "c3", "d4"]
    assert data.class_names == ("round", "spiral") and data.source == "my telescope"
    assert describe(path) == {"n": 4, "image_shape": [69, 69, 3], "classes": ["round", "spiral"],
                              "counts": {"round": 2, "spiral": 2}, "source": "my telescope", "loaded_as": [69, 69, 3]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["mine.h5"]


def test_data_written_file_readable_per_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_dataset(tmp_path / "shared.h5", np.zeros((1, 69, 69, 3), np.uint8),
                             np.array([0]), ["x"], ["one"], "test")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044  # group and others may read it


def test_data_write_failure_leaves_old_file_and_no_partial(tmp_path):
    path = write_dataset(tmp_path / "d.h5", np.zeros((2, 69, 69, 3), np.uint8), np.array([0, 1]),
                         ["a", "b"], ["x", "y"], "first")
    before = path.read_bytes()
    with pytest.raises(TypeError):  # ids that HDF5 cannot store as strings fail after 'images' is written
        write_dataset(path, np.ones((2, 69, 69, 3), np.uint8), np.array([0, 1]), [object(), 3],
                      ["x", "y"], "second")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]


@pytest.mark.parametrize("case, expected, found", [
    ("missing key", "datasets 'images' and 'ans'", "no 'ans'"),
    ("wrong dtype", "'images' of uint8", "float32"),
    ("wrong rank", "shape (N, H, W, 3)", "(4, 69, 69)"),
    ("n mismatch", "one label per image", "4 images but 3 labels"),
    ("truncated", "a complete HDF5 file", "damaged HDF5 file"),
    ("not hdf5", "an HDF5 file in Galaxy10 layout", "another kind of file"),
    ("missing file", "an HDF5 file in Galaxy10 layout", "no such file"),
])
def test_data_malformed_file_names_problem(tmp_path, case, expected, found):
    path = tmp_path / "bad.h5"
    good = np.zeros((4, 69, 69, 3), np.uint8)
    if case == "missing key":
        _write_h5(path, images=good)
    elif case == "wrong dtype":
        _write_h5(path, images=good.astype(np.float32), ans=np.zeros(4, np.uint8))
    elif case == "wrong rank":
        _write_h5(path, images=good[..., 0], ans=np.zeros(4, np.uint8))
    elif case == "n mismatch":
        _write_h5(path, images=good, ans=np.zeros(3, np.uint8))
    elif case == "truncated":
        _write_h5(tmp_path / "whole.h5", images=good, ans=np.zeros(4, np.uint8))
        whole = (tmp_path / "whole.h5").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])  # as an interrupted copy would leave it
    elif case == "not hdf5":
        path.write_text("OBJID,CLASS\n1,0\n")
    with pytest.raises(DataError) as err:
        open_dataset(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in err.value.expected and found in err.value.found
    assert err.value.fix  # always says how to fix it


# --- class subsets -----------------------------------------------------------------------------

def test_data_challenge_subset_remaps_and_recovers_originals(tmp_path):
    path, images, labels = _galaxy10_like(tmp_path)
    data = open_dataset(path)
    sub = challenge_subset(data)
    assert CHALLENGE_KEEP == (0, 1, 2, 7, 8, 9)
    assert sub.class_names == tuple(GALAXY10_SDSS_CLASSES[k] for k in CHALLENGE_KEEP)
    assert len(sub) == int(np.isin(labels, CHALLENGE_KEEP).sum()) == 18
    assert set(sub.labels.tolist()) == set(range(6))
    # Forward: new label = position of the original class in `keep`.
    assert sub.labels.tolist() == [CHALLENGE_KEEP.index(o) for o in sub.original_labels]
    # Back: the original label, name, and image of every galaxy are recoverable.
    rows = sub.ids.astype(int)
    assert sub.original_labels.tolist() == labels[rows].tolist()
    assert all(sub.original_class_names[o] == sub.class_names[n]
               for o, n in zip(sub.original_labels, sub.labels))
    assert np.array_equal(sub.images, images[rows])
    assert not np.isin(sub.original_labels, [3, 4, 5, 6]).any()


def test_data_subset_configurable_and_nested(tmp_path):
    data = open_dataset(_galaxy10_like(tmp_path)[0])
    sub = challenge_subset(data, keep=(9, 1))  # order given = new label order
    assert sub.class_names == (GALAXY10_SDSS_CLASSES[9], GALAXY10_SDSS_CLASSES[1])
    assert sorted(set(zip(sub.labels.tolist(), sub.original_labels.tolist()))) == [(0, 9), (1, 1)]
    nested = select_classes(sub, [1])  # numbers refer to the subset's classes
    assert nested.class_names == (GALAXY10_SDSS_CLASSES[1],)
    assert set(nested.original_labels.tolist()) == {1}  # still in the file's numbering
    assert nested.original_class_names == GALAXY10_SDSS_CLASSES
    with pytest.raises(DataError, match="distinct class numbers"):
        select_classes(data, [0, 0])
    with pytest.raises(DataError, match="distinct class numbers"):
        select_classes(data, [10])


def test_data_challenge_preset_refuses_other_datasets(sample):
    with pytest.raises(DataError, match="Galaxy10 SDSS's 10 classes"):
        challenge_subset(sample)
    spirals = select_classes(sample, [1, 2])
    assert spirals.counts() == {"Spiral CW": 414, "Spiral ACW": 436}


# --- splits ------------------------------------------------------------------------------------

def test_data_split_stratified_disjoint_complete(sample):
    train, val = stratified_split(sample.labels, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(sample)))
    for c, n_c in enumerate(np.bincount(sample.labels)):
        assert (sample.labels[val] == c).sum() == round(0.2 * n_c)


def test_data_split_identical_across_runs_and_pinned():
    labels = np.array([0] * 5 + [1] * 5 + [2] * 10)
    first, second = stratified_split(labels, 0.2, seed=0), stratified_split(labels, 0.2, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    # Pinned: a change of RNG or algorithm changes every saved train/validation split, so it must
    # show up here.
    assert first[1].tolist() == [2, 9, 12, 19]
    assert first[0].tolist() == [0, 1, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 15, 16, 17, 18]
    other = stratified_split(np.array([2, 0, 1, 0, 2, 1, 0, 2, 0, 1, 2, 0]), 0.25, seed=7)
    assert other[1].tolist() == [0, 2, 6]
    assert not np.array_equal(stratified_split(labels, 0.2, seed=1)[1], first[1])


def test_data_split_keeps_rare_class_on_both_sides():
    train, val = stratified_split(np.array([0] * 50 + [1] * 2), 0.2, seed=0)
    assert (np.array([0] * 50 + [1] * 2)[val] == 1).sum() == 1
    assert len(train) + len(val) == 52
    with pytest.raises(DataError, match="between 0 and 1"):
        stratified_split(np.zeros(10, int), 1.0)


# --- `info` on the command line ----------------------------------------------------------------

def test_data_info_cli_json_on_sample(sample_path):
    out = subprocess.run([sys.executable, "-m", "galaxy_vae", "info", str(sample_path), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    summary = json.loads(out.stdout)
    assert summary["n"] == 6664
    assert summary["image_shape"] == [69, 69, 3]
    assert summary["classes"] == list(GZ1_SAMPLE_CLASSES) and len(summary["classes"]) == 6
    assert summary["counts"] == SAMPLE_COUNTS
    assert "Galaxy Zoo" in summary["source"] and "SDSS" in summary["source"]


def test_data_info_cli_reports_bad_file_without_traceback(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not a dataset")
    out = subprocess.run([sys.executable, "-m", "galaxy_vae", "info", str(bad)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and str(bad) in out.stderr
    assert "Traceback" not in out.stderr


def _write_raw(path, shape, chunks=None, early=False) -> None:
    """An HDF5 file whose 'images' declares ``shape`` without its bytes being written (as a crafted
    or interrupted file would): chunked and empty, or contiguous and allocated early (a sparse file)."""
    with h5py.File(path, "w") as f:
        if early:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            space = h5py.h5s.create_simple(shape)
            h5py.h5d.create(f.id, b"images", h5py.h5t.STD_U8LE, space, dcpl=dcpl)
        else:
            f.create_dataset("images", shape=shape, dtype=np.uint8, chunks=chunks)
        f.create_dataset("ans", data=np.zeros(shape[0], np.uint8))


@pytest.mark.parametrize("case, found, fix", [
    ("no rows", "0 images", "build it again"),
    ("tiny images", "4x4 images", "python -m galaxy_vae import"),
    ("all zeros", "zero bytes", "Copy or download the file again"),
    ("empty file", "an empty file", "Copy or download the file again"),
    ("never written", "truncated, sparse, or never fully written", "Copy or download the file again"),
])
def test_data_broken_files_get_one_message_with_the_fix_for_their_problem(tmp_path, case, found, fix):
    path = tmp_path / "odd.h5"
    if case == "no rows":
        _write_h5(path, images=np.zeros((0, 69, 69, 3), np.uint8), ans=np.zeros(0, np.uint8))
    elif case == "tiny images":
        _write_h5(path, images=np.zeros((5, 4, 4, 3), np.uint8), ans=np.zeros(5, np.uint8))
    elif case == "all zeros":
        path.write_bytes(bytes(1 << 20))
    elif case == "empty file":
        path.write_bytes(b"")
    elif case == "never written":
        _write_raw(path, (5000, 69, 69, 3), chunks=(64, 69, 69, 3))
    for read in (open_dataset, describe):
        with pytest.raises(DataError) as err:
            read(path)
        assert str(path) in str(err.value) and found in err.value.found and fix in err.value.fix, err.value


def test_data_a_sparse_file_claiming_143_gb_is_refused_from_its_header(tmp_path):
    """Its header declares 10 million cutouts (143 GB) that the disk does not hold: refused at once,
    by `info` too, without reading them (the subprocess's peak memory stays small)."""
    path = tmp_path / "sparse.h5"
    _write_raw(path, (10_000_000, 69, 69, 3), early=True)
    assert path.stat().st_size > 100e9 and path.stat().st_blocks * 512 < 50e6  # sparse on disk
    probe = ("import sys\nfrom galaxy_vae import cli\ncode = cli.main(['info', sys.argv[1]])\n"
             "print(code, next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    code, peak_mb = done.stdout.split()
    assert code == "2" and "truncated, sparse, or never fully written" in done.stderr, done.stderr
    assert int(peak_mb) < 300 and "Traceback" not in done.stderr


def test_data_a_dataset_larger_than_memory_is_refused(tmp_path, monkeypatch):
    from galaxy_vae import hdf5

    path = write_dataset(tmp_path / "d.h5", np.zeros((40, 69, 69, 3), np.uint8), np.zeros(40), list("abcdefghij") * 4,
                         ["x"], "test")
    monkeypatch.setattr(hdf5, "_memory_available", lambda: 100_000)  # 100 kB free
    with pytest.raises(DataError, match="fits in memory") as err:
        open_dataset(path)
    assert "40 galaxies" in err.value.found and "more memory" in err.value.fix


def test_data_info_reports_the_stored_size_of_resized_images(tmp_path):
    path = tmp_path / "decals.h5"
    _write_h5(path, images=np.zeros((3, 256, 256, 3), np.uint8), ans=np.array([0, 1, 2], np.uint8))
    summary = describe(path)
    assert summary["image_shape"] == [256, 256, 3] and summary["loaded_as"] == [69, 69, 3]
