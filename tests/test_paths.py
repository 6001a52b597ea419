"""Where files live: flag, then environment, then the checkout (or, installed, the working
directory); and the one atomic write."""

from __future__ import annotations

from pathlib import Path

import pytest

from galaxy_vae import paths


def test_paths_data_dir_flag_then_env_then_checkout(tmp_path):
    flag, env = tmp_path / "flag", tmp_path / "env"
    assert paths.data_dir(flag, {paths.DATA_ENV: str(env)}) == flag
    assert paths.data_dir(None, {paths.DATA_ENV: str(env)}) == env
    assert paths.data_dir(None, {}) == Path(paths.__file__).resolve().parents[1] / "data"
    assert paths.data_dir(None, {paths.DATA_ENV: "  "}) == paths.data_dir(None, {})
    assert paths.default_dataset({paths.DATA_ENV: str(env)}) == env / "gz1_sample.h5"


def test_paths_checkpoints_from_env_or_checkout(tmp_path):
    assert paths.checkpoint_dir({paths.CHECKPOINTS_ENV: str(tmp_path)}) == tmp_path
    assert paths.checkpoint_dir({}) == Path(paths.__file__).resolve().parents[1] / "checkpoints"
    assert paths.default_checkpoint({}).name == "detail_vae.safetensors"
    assert paths.dense_ae_checkpoint({paths.CHECKPOINTS_ENV: str(tmp_path)}) is None  # not there
    (tmp_path / paths.DENSE_AE_NAME).write_bytes(b"x")
    assert paths.dense_ae_checkpoint({paths.CHECKPOINTS_ENV: str(tmp_path)}) == tmp_path / paths.DENSE_AE_NAME


def test_paths_installed_package_uses_the_working_directory(tmp_path, monkeypatch):
    """Outside a checkout (pip install), data/ and checkpoints/ are looked for where the user is."""
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    assert paths.checkout() is None
    assert paths.data_dir(None, {}) == tmp_path / "data"
    assert paths.checkpoint_dir({}) == tmp_path / "checkpoints"


def test_paths_milky_way_from_env_or_shared_folder(tmp_path, milky_way_path):
    assert paths.milky_way_path({}) == paths.milky_way_default() == milky_way_path
    mine = tmp_path / "mine.webp"
    assert paths.milky_way_path({paths.MILKY_WAY_ENV: str(mine)}) is None  # set, but no file there
    mine.write_bytes(milky_way_path.read_bytes())
    assert paths.milky_way_path({paths.MILKY_WAY_ENV: str(mine)}) == mine


def test_paths_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with paths.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"new")
        assert not target.exists()  # nobody sees it before the block ends
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), paths.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new" and list(target.parent.iterdir()) == [target]


def test_paths_large_map_rows_from_env_or_default():
    assert paths.large_map_rows(50_000, {}) == 50_000
    assert paths.large_map_rows(50_000, {paths.LARGE_MAP_ENV: " 1000 "}) == 1000
    with pytest.raises(ValueError, match="whole number of galaxies"):
        paths.large_map_rows(50_000, {paths.LARGE_MAP_ENV: "lots"})
