"""Checkpoints: weights in safetensors, everything else as JSON in the file's own header.

A checkpoint holds the model's tensors plus one JSON document under the header key
``galaxy_vae``: the registry name, the model config (so the file alone rebuilds the model), the
dataset and its sha256, class names, the split, metrics, training history and library versions.

Loading never runs code. The file must be safetensors (an 8-byte header length, then a JSON
header); anything else — notably a pickle or a ``torch.save`` zip, which can execute code when
unpickled — is refused by looking at its first bytes, before any deserialiser touches it.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from galaxy_vae.data import GalaxyData, select_classes
from galaxy_vae.errors import CheckpointError
from galaxy_vae.models import MODELS, build_model, config_dict, model_name
from galaxy_vae.paths import CHECKPOINTS_ENV, atomic_path, checkpoint_dir, default_checkpoint

log = logging.getLogger(__name__)

META_KEY = "galaxy_vae"  # safetensors header key holding the JSON metadata
FORMAT = "galaxy_vae-checkpoint/1"
HOW_TO_GET = ("Use a checkpoint written by `python -m galaxy_vae train ... --out FILE.safetensors`, "
              f"or one shipped in the checkpoints folder (checkpoints/ or ${CHECKPOINTS_ENV}).")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on CPU), its metadata and where it came from."""

    model: nn.Module
    meta: dict
    path: Path

    @property
    def name(self) -> str:
        """Registry name of the model, e.g. "galaxy_vae"."""
        return self.meta["model"]


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """Write ``model``'s weights and ``meta`` (JSON-ready) atomically; returns the path.

    ``model`` and ``config`` in the metadata always describe ``model`` itself. The file is
    written beside its target and renamed into place, so a reader never sees half a file. A path
    not ending in ``.safetensors`` gets that suffix, so the app and ``list_checkpoints`` find it.
    """
    path = Path(path)
    if path.suffix != ".safetensors":  # exactly what list_checkpoints looks for
        path = path.with_name(path.name + ".safetensors")
    meta = {**meta, "model": model_name(model), "config": config_dict(model), "format": FORMAT}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors writes 0600; a checkpoint is meant to be shared
    log.info("saved %s (%s, %.1f MB)", path, meta["model"], path.stat().st_size / 1e6)
    return path


def _umask() -> int:
    """The process umask, read from /proc where it can be (setting it, the only portable way to
    read it, briefly changes it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _describe_foreign(head: bytes) -> str:
    """What a non-safetensors file looks like, from its first bytes (never deserialised)."""
    if head[:2] == b"PK":
        return "a zip archive (a torch.save file, whose pickle can run code)"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c", b"]", b"}"):
        return "a pickle stream (which can run code when loaded)"
    if head[:4] == b"\x89HDF":
        return "an HDF5 file (a dataset, not a checkpoint)"
    return f"an unknown format starting with {head[:8]!r}"


def _check_is_safetensors(path: Path) -> None:
    """Refuse anything but a well-formed safetensors container, judging by bytes alone."""
    if not path.is_file():
        raise CheckpointError(f"Cannot load checkpoint {path}", expected="a .safetensors file",
                              found="no such file", fix=HOW_TO_GET)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return
    raise CheckpointError(f"Refusing to load {path}", expected="a safetensors checkpoint",
                          found=_describe_foreign(head), fix=HOW_TO_GET)


def read_meta(path: str | Path) -> dict:
    """The JSON metadata of a checkpoint, without loading its weights."""
    path = Path(path)
    _check_is_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except SafetensorError as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}", expected="a complete safetensors file",
                              found=f"a damaged header ({exc})", fix=HOW_TO_GET) from exc
    if META_KEY not in header:
        raise CheckpointError(f"Cannot load checkpoint {path}",
                              expected=f"galaxy_vae metadata under the header key '{META_KEY}'",
                              found=f"header keys {sorted(header)}", fix=HOW_TO_GET)
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"Cannot load checkpoint {path}", expected="JSON metadata",
                              found=f"unparseable text ({exc})", fix=HOW_TO_GET) from exc
    if not isinstance(meta, dict) or meta.get("model") not in MODELS:
        raise CheckpointError(f"Cannot load checkpoint {path}",
                              expected=f"a model name among {', '.join(MODELS)}",
                              found=repr(meta.get("model") if isinstance(meta, dict) else meta),
                              fix="The file was written by another program or a newer galaxy_vae.")
    return meta


def _check_shapes(path: Path, expected: dict[str, tuple], found: dict[str, tuple], name: str) -> None:
    """Name every missing, unexpected or mis-shaped tensor: expected (model) vs found (file)."""
    problems = [f"{k} missing" for k in expected if k not in found]
    problems += [f"{k} unexpected" for k in found if k not in expected]
    problems += [f"{k} {found[k]} instead of {expected[k]}" for k in expected
                 if k in found and found[k] != expected[k]]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise CheckpointError(f"Checkpoint {path} does not fit its architecture",
                              expected=f"the {len(expected)} tensors of {name} with its stored config",
                              found=shown, fix="Retrain, or use the galaxy_vae version that wrote it.")


def _shapes_in_file(path: Path) -> dict[str, tuple]:
    """Each tensor's shape from the safetensors header alone (nothing is read or allocated)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except SafetensorError as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}", expected="a complete safetensors file",
                              found=f"a damaged header ({exc})", fix=HOW_TO_GET) from exc


def load_checkpoint(path: str | Path | None = None) -> Checkpoint:
    """Rebuild the model stored in ``path`` (default: :func:`paths.default_checkpoint`), in eval
    mode on CPU, with its metadata.

    Nothing in the file is trusted before it is checked: the config is first built on torch's
    "meta" device (shapes without memory), so a config that cannot build, or builds other shapes
    than the file's tensors, is refused before anything is allocated; then the weights are read
    and refused if any is NaN or infinite.
    """
    path = Path(path) if path else default_checkpoint()
    meta = read_meta(path)
    try:
        with torch.device("meta"):
            skeleton = build_model(meta["model"], meta.get("config"))
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise CheckpointError(f"Cannot rebuild the model in {path}",
                              expected=f"a valid {meta['model']} config (positive sizes that build the model)",
                              found=f"{meta.get('config')} ({exc})", fix=HOW_TO_GET) from exc
    name = type(skeleton).__name__
    _check_shapes(path, {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, _shapes_in_file(path), name)
    tensors = load_file(str(path), device="cpu")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"Refusing checkpoint {path}", expected="finite weights",
                              found=f"NaN or infinite values in {len(bad)} tensor(s): {', '.join(bad[:5])}"
                                    + (" ..." if len(bad) > 5 else ""),
                              fix="The training that wrote it diverged or the file was altered: retrain it.")
    model = build_model(meta["model"], meta.get("config"))
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return Checkpoint(model=model, meta=meta, path=path)


def list_checkpoints(folder: str | Path | None = None, generative: bool = False) -> list[Path]:
    """The .safetensors files in ``folder`` (default: the checkpoints folder), the default
    checkpoint's name first, then by name; with ``generative``, only models that decode (the map
    and the generator's), read from each file's header without loading weights."""
    folder = Path(folder) if folder else checkpoint_dir()
    found = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if generative:
        found = [p for p in found if _decodes(p)]
    return sorted(found, key=lambda p: (p.name != default_checkpoint().name, p.name))


def _decodes(path: Path) -> bool:
    """Whether the checkpoint's model has a decoder; unreadable files count as yes, so that choosing
    one shows what is wrong with it instead of hiding it."""
    try:
        cls = MODELS.get(read_meta(path).get("model"))
    except CheckpointError:
        return True
    return cls is None or hasattr(cls, "decode")


def dataset_for(meta: dict, data: GalaxyData) -> GalaxyData:
    """``data`` as the checkpoint's model saw it: same class subset, same class names.

    Raises :class:`CheckpointError` when the classes do not match (e.g. a Galaxy10 model given
    the Galaxy Zoo sample), since every label-based figure would then be meaningless.
    """
    subset = meta.get("class_subset")
    if subset is not None and data.original_class_names is None:
        data = select_classes(data, subset)
    want = tuple(meta.get("class_names") or ())
    if want and tuple(data.class_names) != want:
        raise CheckpointError(f"The {meta.get('model')} checkpoint does not match {data.name}",
                              expected=f"classes {list(want)}", found=f"classes {list(data.class_names)}",
                              fix=f"Use the dataset it was trained on ({meta.get('dataset', 'see its metadata')}) "
                                  "or train a checkpoint on this one.")
    return data
