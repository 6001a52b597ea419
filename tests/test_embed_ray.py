"""``embed --engine ray``: Ray Data actors give the single-process numbers, row for row.

The Ray tests share one local Ray instance (``ray.init(num_cpus=2)``, no dashboard, no usage
statistics, no network), started once for the module: Ray's start-up costs several seconds. They
run over real sample galaxies: a 160-galaxy HDF5 file and a folder of 40 of them written as PNGs.
Without Ray installed (``pip install galaxy_vae[scale]``) those tests skip; the rest run anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from galaxy_vae.catalogue import Catalogue, ModelSpace
from galaxy_vae.checkpoints import load_checkpoint
from galaxy_vae.cli import main
from galaxy_vae.embed import encode_images, recon_errors
from galaxy_vae.embed_ray import assemble, read_shards, require_ray, write_shard
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.hdf5 import open_dataset, open_for_search, write_dataset
from galaxy_vae.importer import import_folder

ENCODER = ROOT / "checkpoints" / "similarity.safetensors"  # what the app searches
VAE = ROOT / "checkpoints" / "galaxy_vae.safetensors"  # a model with a decoder: reconstruction errors too
TOL = 1e-6


# --- without Ray ------------------------------------------------------------------------------------

def test_embed_ray_importing_galaxy_vae_does_not_import_ray():
    code = ("import sys, galaxy_vae, galaxy_vae.cli, galaxy_vae.commands, galaxy_vae.embed_ray, galaxy_vae.catalogue; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT).returncode == 0


def test_embed_ray_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(GalaxyVAEError, match=r"pip install galaxy_vae\[scale\]"):
        require_ray()


def _batch(ids, offset=0.0):
    ids = np.asarray(ids, dtype=np.int64)
    return {"id": ids, "vectors/m": np.stack([ids + offset, -ids + offset], 1).astype(np.float32)}


def test_embed_ray_assemble_orders_rows_and_drops_identical_duplicates():
    cols, dups = assemble([_batch([3, 4]), _batch([0, 1, 2]), _batch([3, 4])], n=5)
    assert dups == 2
    assert cols["id"].tolist() == [0, 1, 2, 3, 4]
    assert cols["vectors/m"][:, 0].tolist() == [0, 1, 2, 3, 4]


def test_embed_ray_assemble_refuses_lost_rows_and_conflicting_copies():
    with pytest.raises(GalaxyVAEError, match="lost rows") as info:
        assemble([_batch([0, 1]), _batch([3])], n=4)
    assert "[2]" in str(info.value)
    with pytest.raises(GalaxyVAEError, match="different values"):
        assemble([_batch([0, 1]), _batch([1], offset=0.5)], n=2)
    with pytest.raises(GalaxyVAEError, match="not the catalogue's"):
        assemble([_batch([0, 1, 7])], n=2)


def test_embed_ray_shards_read_back_as_written(tmp_path):
    pytest.importorskip("pyarrow")
    batch = {**_batch([5, 6, 7]), "ok": np.array([True, False, True]), "error": np.array(["", "bad", ""]),
             "recon_errors/m": np.array([0.1, np.nan, 0.3], dtype=np.float32)}
    write_shard(tmp_path / "part-00000.parquet", batch)
    (back,) = read_shards(tmp_path)
    assert set(back) == set(batch)
    for key, values in batch.items():
        np.testing.assert_array_equal(back[key], values)


def test_embed_ray_shard_reads_are_the_rows_the_app_opens(sample, tmp_path):
    """A Galaxy10 SDSS file: the challenge's rows, and one shard of them read as open_for_search holds them."""
    from galaxy_vae.data import CHALLENGE_KEEP, GALAXY10_SDSS_CLASSES
    from galaxy_vae.hdf5 import read_rows, search_rows

    labels = np.arange(60) % 10
    path = write_dataset(tmp_path / "g10.h5", sample.images[:60], labels, sample.ids[:60], GALAXY10_SDSS_CLASSES, "t")
    rows = search_rows(path)
    assert rows.tolist() == [i for i in range(60) if labels[i] in CHALLENGE_KEEP]
    assert search_rows(path, challenge=False).tolist() == list(range(60))
    shown = open_for_search(path)
    np.testing.assert_array_equal(read_rows(path, rows[5:20]), shown.images[5:20])


def test_embed_ray_local_engine_refuses_a_folder(tmp_path, capsys):
    assert main(["embed", "--data", str(tmp_path)]) == 2
    assert "--engine ray" in capsys.readouterr().err


# --- on a local Ray instance ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")  # before init: the local instance never phones home
        env.setenv("PYTHONPATH", os.environ.get("PYTHONPATH") or str(ROOT))  # workers import this checkout
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray
        ray.shutdown()


@pytest.fixture(scope="module")
def small_h5(sample, tmp_path_factory) -> Path:
    """160 real sample galaxies spread over the file, as their own dataset."""
    rows = np.linspace(0, len(sample) - 1, 160).astype(int)
    small = sample.take(rows)
    return write_dataset(tmp_path_factory.mktemp("ray_h5") / "small.h5", small.images, small.labels, small.ids,
                         small.class_names, small.source)


@pytest.fixture(scope="module")
def models():
    return {p.stem: load_checkpoint(p) for p in (ENCODER, VAE)}


def _expected(models, images) -> dict[str, np.ndarray]:
    """The single-process path: embed.encode_images, and recon_errors for the model with a decoder."""
    out = {f"vectors/{name}": encode_images(ckpt.model, images) for name, ckpt in models.items()}
    out[f"recon_errors/{VAE.stem}"] = recon_errors(models[VAE.stem].model, images)
    return out


def test_embed_ray_hdf5_equals_single_process_and_lands_in_the_store(local_ray, small_h5, models, tmp_path, capsys):
    from galaxy_vae.embed_ray import hdf5_source, persist, run

    result = run(hdf5_source(small_h5), [ENCODER, VAE], tmp_path / "shards", workers=2, shard_size=48)
    assert "embedding on 2 Ray worker(s)" in capsys.readouterr().err  # the progress bar over rows
    data = open_dataset(small_h5)
    assert result.n == len(data) and result.columns["id"].tolist() == list(range(len(data)))
    for key, want in _expected(models, data.images).items():
        np.testing.assert_allclose(result.columns[key], want, rtol=0, atol=TOL, err_msg=key)
    assert len(result.shards) == 4  # 160 rows in shards of 48
    back, _ = assemble(read_shards(tmp_path / "shards"), result.n)
    np.testing.assert_array_equal(back[f"vectors/{ENCODER.stem}"], result.vectors(ENCODER.stem))

    persist(result, small_h5, [ENCODER], progress=False)  # what the app then opens, without encoding
    cat = Catalogue.open(open_for_search(small_h5, mapped=True), ModelSpace(models[ENCODER.stem]))
    np.testing.assert_array_equal(cat.store.array("vectors"), result.vectors(ENCODER.stem))
    assert cat.store.array("kth_10") is not None and cat.store.value("nn_distance_threshold") is not None
    assert (cat.store.file("index") is not None) == cat.index.savable  # faiss for large catalogues only


def test_embed_ray_worker_that_dies_is_retried_without_losing_or_repeating_rows(local_ray, small_h5, models,
                                                                                tmp_path):
    from galaxy_vae.embed_ray import hdf5_source, run

    flag = tmp_path / "crash_once"
    flag.touch()
    result = run(hdf5_source(small_h5), [ENCODER], tmp_path / "shards", workers=2, shard_size=32,
                 crash_once=flag, progress=False)
    assert not flag.exists()  # a worker took the flag and exited mid-shard
    ids = np.concatenate([b["id"] for b in read_shards(tmp_path / "shards")])
    assert sorted(ids.tolist()) == list(range(160))  # every row exactly once in the shards written
    want = encode_images(models[ENCODER.stem].model, open_dataset(small_h5).images)
    np.testing.assert_allclose(result.vectors(ENCODER.stem), want, rtol=0, atol=TOL)


def test_embed_ray_folder_equals_import_then_embed(local_ray, sample, models, tmp_path, capsys):
    pics = tmp_path / "cutouts"
    pics.mkdir()
    rows = np.linspace(0, len(sample) - 1, 40).astype(int)
    for row in rows:
        Image.fromarray(sample.images[row]).save(pics / f"{sample.ids[row]}.png")
    (pics / "1000.png").write_bytes(b"\x89PNG not really")  # labelled, unreadable: reported and skipped
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{sample.ids[r]},{sample.labels[r]}\n" for r in rows) + "1000,0\n")
    names = list(sample.class_names)
    out = tmp_path / "catalogue" / "mine.h5"
    args = ["embed", "--engine", "ray", "--data", str(pics), "--labels", str(labels), "--no-crop", "--class-names",
            *names, "--checkpoint", str(ENCODER), "--workers", "2", "--dataset-out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "skipped unreadable 1000.png" in captured.err and "wrote 40 galaxies" in captured.out

    imported = open_dataset(import_folder(pics, labels, tmp_path / "imported.h5", names, galaxy_zoo_frame=False,
                                          workers=1, progress=False).out)
    written = open_dataset(out)
    np.testing.assert_array_equal(written.images, imported.images)
    assert written.ids.tolist() == imported.ids.tolist() and written.labels.tolist() == imported.labels.tolist()
    cat = Catalogue.open(open_for_search(out, mapped=True), ModelSpace(models[ENCODER.stem]))
    np.testing.assert_allclose(cat.store.array("vectors"), encode_images(models[ENCODER.stem].model, imported.images),
                               rtol=0, atol=TOL)
