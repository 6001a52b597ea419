"""Checkpoints: exact round trips, code never runs on load, clear errors, the shipped files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from safetensors.torch import load_file, save_file

from galaxy_vae.checkpoints import (
    dataset_for,
    list_checkpoints,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from galaxy_vae.embed import to_input
from galaxy_vae.errors import CheckpointError
from galaxy_vae.models import MODELS, build_model
from galaxy_vae.paths import checkpoint_dir, default_checkpoint

SHIPPED = ["detail_vae.safetensors", "galaxy_vae.safetensors", "seed_conv_vae.safetensors", "seed_dense_ae.safetensors"]


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpoints_save_then_load_reproduces_outputs_bit_for_bit(name, sample, tmp_path):
    torch.manual_seed(3)
    model = build_model(name)
    with torch.no_grad():  # move BatchNorm running stats off their defaults, so they must be saved too
        model.train()(to_input(sample.images[:64], model))
    model.eval()
    meta = {"class_names": list(sample.class_names), "split_seed": 0, "history": [{"epoch": 1, "loss": 1.5}]}
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, meta)
    ckpt = load_checkpoint(path)
    assert ckpt.name == name and ckpt.path == path and not ckpt.model.training
    assert ckpt.meta["history"] == meta["history"] and ckpt.meta["config"]
    x = to_input(sample.images[:16], model)
    with torch.no_grad():
        before, after = model(x), ckpt.model(x)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.safetensors"]  # no temporary file left


def test_checkpoints_saved_without_the_suffix_get_it_and_are_listed(tmp_path):
    """`train --out checkpoints/mine` must give a file the app's checkpoint selector lists."""
    path = save_checkpoint(tmp_path / "mine", build_model("conv_vae"), {"class_names": list("abcdef")})
    assert path == tmp_path / "mine.safetensors" and path.is_file()
    assert list_checkpoints(tmp_path) == [path] and load_checkpoint(path).name == "conv_vae"


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_checkpoints_are_written_with_the_umask_permissions(tmp_path, mask):
    """safetensors itself writes 0600; a saved checkpoint gets 0666 minus the umask, like any file."""
    old = os.umask(mask)
    try:
        path = save_checkpoint(tmp_path / "model.safetensors", build_model("conv_vae"), {})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: proof that a loader executed code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoints_refuse_a_malicious_pickle_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    raw = tmp_path / "evil.safetensors"  # a misleading name does not help it
    raw.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as z:  # the layout torch.save writes: a pickle inside a zip
        z.writestr("archive/data.pkl", pickle.dumps(_Payload(marker)))
    for path, kind in ((raw, "pickle"), (archive, "zip")):
        with pytest.raises(CheckpointError, match=kind) as info:
            load_checkpoint(path)
        assert "safetensors" in info.value.expected
    assert not marker.exists()
    pickle.loads(raw.read_bytes())  # the payload is live: unpickling it does create the marker
    assert marker.exists()


def test_checkpoints_shape_mismatch_names_expected_and_found(tmp_path):
    model = build_model("galaxy_vae")
    path = save_checkpoint(tmp_path / "a.safetensors", model, {})
    meta = read_meta(path)
    meta["config"]["latent_dim"] = 3  # the weights are for a 2-D latent
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    bad = tmp_path / "b.safetensors"
    save_file(tensors, str(bad), metadata={"galaxy_vae": json.dumps(meta)})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert "fc_mu.weight (2, 128) instead of (3, 128)" in info.value.found
    assert "GalaxyVAE" in info.value.expected


def test_checkpoints_refuse_missing_files_foreign_metadata_and_unknown_models(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "none.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"galaxy_vae": json.dumps({"model": "unet"})})
    with pytest.raises(CheckpointError, match="unet"):
        load_checkpoint(other)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(default_checkpoint().read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)


def test_checkpoints_dataset_for_refuses_other_classes(sample):
    meta = {"model": "galaxy_vae", "class_names": ["Disk", "Smooth"], "dataset": "Galaxy10.h5"}
    with pytest.raises(CheckpointError) as info:
        dataset_for(meta, sample)
    assert "Elliptical" in info.value.found and "Galaxy10.h5" in info.value.fix
    assert dataset_for({"class_names": list(sample.class_names)}, sample) is sample


@pytest.mark.parametrize("filename", SHIPPED)
def test_checkpoints_shipped_files_load_with_their_provenance(filename, sample):
    path = checkpoint_dir() / filename
    assert path.stat().st_size < 10 * 1024 * 1024
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    for key in ("model", "config", "dataset", "dataset_sha256", "class_names", "split_seed", "val_fraction",
                "metrics", "history", "versions", "command", "train_config"):
        assert key in meta, key
    assert meta["class_names"] == list(sample.class_names) and not meta["interrupted"]
    assert len(meta["history"]) == meta["train_config"]["epochs"]
    assert meta["command"].startswith("python -m galaxy_vae train --model " + ckpt.name)


def test_checkpoints_default_is_the_detail_vae_and_listed_first():
    assert default_checkpoint() == checkpoint_dir() / "detail_vae.safetensors"
    assert load_checkpoint().name == "detail_vae"
    found = list_checkpoints()
    assert found[0] == default_checkpoint()
    assert {p.name for p in found} >= set(SHIPPED)


def _with_config(src: Path, dst: Path, **config) -> Path:
    """A copy of checkpoint ``src`` whose stored config says ``config`` (the tensors unchanged)."""
    meta = read_meta(src)
    meta["config"] = {**meta["config"], **config}
    tensors = load_file(str(src))
    save_file(tensors, str(dst), metadata={"galaxy_vae": json.dumps(meta)})
    return dst


@pytest.mark.parametrize("config", [{"latent_dim": -3}, {"hidden": "wide"}, {"channels": [8, -16, 32, 64]},
                                    {"latent_dim": 2.5}])
def test_checkpoints_impossible_configs_are_refused_by_name(tmp_path, config):
    path = _with_config(default_checkpoint(), tmp_path / "odd.safetensors", **config)
    with pytest.raises(CheckpointError, match="Cannot rebuild the model") as err:
        load_checkpoint(path)
    assert str(list(config)[0]) in str(err.value)


def test_checkpoints_an_absurd_config_is_refused_before_allocating_it(tmp_path):
    """hidden=200000 would allocate gigabytes; the shapes are compared on torch's meta device first
    (measured in a subprocess: its peak memory stays near an ordinary load's)."""
    path = _with_config(default_checkpoint(), tmp_path / "huge.safetensors", hidden=200_000)
    probe = ("import sys\nfrom galaxy_vae.checkpoints import load_checkpoint\n"
             "from galaxy_vae.errors import CheckpointError\n"
             "try:\n    load_checkpoint(sys.argv[1])\nexcept CheckpointError as exc:\n    print('refused:', exc)\n"
             "print(next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
    refused, peak_mb = done.stdout.strip().splitlines()
    assert refused.startswith("refused:") and "does not fit its architecture" in refused, refused
    assert "instead of" in refused and int(peak_mb) < 700, peak_mb


def test_checkpoints_non_finite_weights_are_refused_by_tensor_name(tmp_path, milky_way_path):
    src = default_checkpoint()
    tensors = load_file(str(src))
    tensors["fc_mu.weight"] = torch.full_like(tensors["fc_mu.weight"], float("nan"))
    tensors["dec_fc.0.bias"][0] = float("inf")
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata={"galaxy_vae": json.dumps(read_meta(src))})
    with pytest.raises(CheckpointError, match="NaN or infinite values in 2 tensor") as err:
        load_checkpoint(path)
    assert "fc_mu.weight" in str(err.value) and "dec_fc.0.bias" in str(err.value)
    for command in (["evaluate", "--data", "data/gz1_sample.h5", "--json"],
                    ["search", "--data", "data/gz1_sample.h5", "--image", str(milky_way_path)]):
        done = subprocess.run([sys.executable, "-m", "galaxy_vae", *command, "--checkpoint", str(path)],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 2 and "NaN or infinite" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_checkpoints_loading_every_model_leaves_torch_dynamo_unimported(tmp_path):
    """load_checkpoint builds each model on the meta device first; an out-of-place op there imports
    torch._dynamo (0.9 s of the app's cold start, once the encoder did). Checked in a fresh process."""
    import sys

    meta = {"class_names": list("abcdef")}
    files = [str(save_checkpoint(tmp_path / f"{name}.safetensors", build_model(name), meta)) for name in MODELS]
    code = ("import sys; from galaxy_vae.checkpoints import load_checkpoint\n"
            f"for f in {files!r}: load_checkpoint(f)\n"
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
