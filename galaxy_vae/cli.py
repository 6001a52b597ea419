"""Command-line interface: ``python -m galaxy_vae COMMAND ...`` -- the flags, wired to the commands
of :mod:`galaxy_vae.commands`. Flags shared by several commands are defined once (argparse
``parents``); ``train``'s flags come from :class:`galaxy_vae.configs.TrainConfig`'s fields.
Errors a user can fix (:class:`GalaxyVAEError`) print as one message and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from galaxy_vae import commands
from galaxy_vae.configs import SIMILARITY_NAMES, AugmentConfig, TrainConfig, flag_fields
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.images import KNOWN_FORMATS

ALL_CLASSES_HELP = "Galaxy10 SDSS: all ten classes (default: the challenge's six face-on ones)"


def _shared(*adders) -> argparse.ArgumentParser:
    """A parent parser holding the flags ``adders`` add (argparse ``parents=``)."""
    parent = argparse.ArgumentParser(add_help=False)
    for add in adders:
        add(parent)
    return parent


def _checkpoint(p) -> None:
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model checkpoint (default: the app's default model in the checkpoints folder)")


def _framing(p) -> None:
    p.add_argument("--framing", choices=("auto", "none"), default="none",
                   help="auto: pad/crop so the galaxy fills the frame as catalogue galaxies do; none: the "
                        "picture's centre square (default: measured to find better neighbours)")
    p.add_argument("--keep-sky", action="store_true",
                   help="keep the picture's own sky level (default: matched to the catalogue's)")


def _frames(p) -> None:
    p.add_argument("--frames", type=Path, default=None,
                   help="folder of the dataset's raw 423 px frames, <objID>.jpeg "
                        "(default: $GALAXY_VAE_FRAMES, else the offline sample's)")


def _all_classes(p) -> None:
    p.add_argument("--all-classes", action="store_true", help=ALL_CLASSES_HELP)


def _json(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for machines")


def _train_flags(p) -> None:
    """One flag per TrainConfig and AugmentConfig field: --no-NAME for settings that default to on."""
    for f in flag_fields(TrainConfig) + flag_fields(AugmentConfig):
        name = f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(f"--{name}", dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{f.metadata['help']} (default: {'on' if f.default else 'off'})")
        else:
            kind = type(f.default) if f.default is not None else str
            p.add_argument(f"--{name}", dest=f.name, type=kind, default=None,
                           help=f"{f.metadata['help']} (default: {f.default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m galaxy_vae",
                                     description="Explore the latent space of galaxy images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model, picture = _shared(_checkpoint), _shared(_framing, _all_classes)

    p = sub.add_parser("info", help="summarise a dataset file", parents=[_shared(_json)])
    p.add_argument("file", type=Path)
    p.set_defaults(func=commands.cmd_info)

    p = sub.add_parser("import", help="build a dataset from a folder of pictures and an id,label CSV")
    p.add_argument("folder", type=Path)
    p.add_argument("--labels", type=Path, required=True, help="CSV of id,label (id = file name without extension)")
    p.add_argument("--out", type=Path, required=True, help="HDF5 file to write")
    p.add_argument("--class-names", nargs="+", metavar="NAME", help="one name per label, in label order")
    p.add_argument("--source", help="credit stored in the file (default: the folder name)")
    p.add_argument("--no-crop", action="store_true",
                   help="pictures are already framed like Galaxy10: only resize to 69x69 "
                        "(default: keep the central 207/424 of a Galaxy Zoo frame)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.set_defaults(func=commands.cmd_import)

    p = sub.add_parser("fetch", help="download Galaxy10 SDSS or DECaLS, checked against its published sha256")
    p.add_argument("dataset", choices=["galaxy10", "galaxy10-decals"])  # the names in fetch.REGISTRY
    p.add_argument("--dir", type=Path, default=None,
                   help="download folder (default: $GALAXY_VAE_DATA, else data/)")
    p.add_argument("--replace", action="store_true",
                   help="download over a file of the same name whose sha256 differs (default: refuse)")
    p.set_defaults(func=commands.cmd_fetch)

    p = sub.add_parser("search", help="nearest catalogue galaxies of pictures (as the map page's upload)",
                       parents=[model, picture])
    p.add_argument("--data", type=Path, required=True, help="dataset to search (HDF5)")
    p.add_argument("--image", type=Path, nargs="+", required=True, metavar="PATH",
                   help=f"pictures to look up ({KNOWN_FORMATS})")
    p.add_argument("-k", type=int, default=10, help="neighbours per picture (default 10)")
    p.add_argument("--similarity", choices=list(SIMILARITY_NAMES), default=None,
                   help="what 'alike' means: " + "; ".join(f"{k}: {v}" for k, v in SIMILARITY_NAMES.items())
                        + " (default: the galaxy encoder when its checkpoint is present; latent and invariant "
                          "search --checkpoint's latent space)")
    p.add_argument("--invariant", action="store_true",
                   help="match any rotation or mirror image of the picture (same as --similarity invariant)")
    p.add_argument("--json", action="store_true", help='print a JSON list, one entry per picture: '
                   '[{"rank", "index", "id", "label", "class_name", "distance"}, ...]')
    p.set_defaults(func=commands.cmd_search)

    p = sub.add_parser("generate", help="a grid of generated lookalikes of a picture (as the Milky Way page)",
                       parents=[model, picture])
    p.add_argument("--near", type=Path, required=True, metavar="IMAGE", help="the picture to sample lookalikes of")
    p.add_argument("-n", type=int, default=16, help="lookalikes, tiled as square as possible (default 16: 4x4)")
    p.add_argument("--temperature", type=float, default=2.0,
                   help="radius in posterior standard deviations: z = mu + sigma*e, |e| <= T (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0): same seed, same grid")
    p.add_argument("--variety", type=float, default=1.0,
                   help="detail VAE: how far the details vary around the picture's own, in units of how much "
                        "real galaxies at each sampled map point differ (default 1; 0: the picture's details alone)")
    p.add_argument("--data", type=Path, default=None,
                   help="catalogue for the nearest real galaxies (default: gz1_sample.h5 in the datasets folder)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.set_defaults(func=commands.cmd_generate)

    p = sub.add_parser("train", help="train a model on a dataset's training split and save a checkpoint",
                       parents=[_shared(_train_flags, _all_classes, _frames)])
    p.add_argument("--model", required=True,
                   help="architecture, by registry name: galaxy_vae (the app's), similarity (the galaxy encoder "
                        "behind neighbour search, trained on raw frames: see --frames), conv_vae and dense_ae "
                        "(the seed's)")
    p.add_argument("--data", type=Path, required=True, help="dataset (HDF5)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--classes", type=int, nargs="+", metavar="N", help="train on these class numbers only")
    p.add_argument("--model-config", metavar="JSON", help='architecture overrides, e.g. \'{"head_hidden": 0}\'')
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("evaluate", help="held-out retrieval precision@10 and reconstruction error of a checkpoint",
                       parents=[model, _shared(_json, _frames, _framing)])
    p.add_argument("--data", type=Path, required=True, help="the dataset it was trained on (HDF5)")
    p.add_argument("--no-pixel", action="store_true", help="skip the (slow) pixel-space baseline")
    p.add_argument("--robustness", action="store_true",
                   help="also re-cut the validation galaxies from their raw frames (fields of view 50-423 px, a "
                        "brighter sky, rotations), prepare them as uploads (--framing, --keep-sky) and measure "
                        "macro precision@10 of each variant; skipped, with the reason, without the frames")
    p.add_argument("--realism", action="store_true",
                   help="also measure statmorph's Gini, M20, C, A, S of validation galaxies, of their reconstructions "
                        "and of samples at their map points (details from the prior), with real sky noise added to "
                        "decoded images; W1 per statistic against a real-vs-real baseline")
    p.add_argument("--realism-n", type=int, default=300, metavar="N",
                   help="validation galaxies measured for --realism (default 300; ~0.13 s each per process)")
    p.add_argument("--processes", type=int, default=1, help="statmorph processes for --realism (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of --realism's galaxies, halves, noise and samples")
    p.set_defaults(func=commands.cmd_evaluate)

    p = sub.add_parser("embed", help="encode every galaxy of a dataset into the persisted catalogue the app reads "
                                     "(or, with --out, export the latents)", parents=[model])
    p.add_argument("--data", type=Path, required=True,
                   help="dataset (HDF5); with --engine ray also a folder of cutouts (with --labels)")
    p.add_argument("--out", type=Path, default=None,
                   help="export the latents instead: .csv (id,label,z0,z1,...) or .npy (N x d float32)")
    p.add_argument("--pixels", action="store_true",
                   help="also the raw-pixel baseline's outlier thresholds (slow: every pair of galaxies compared)")
    _all_classes(p)
    p.add_argument("--batch-size", type=int, default=None, help="images per model call (default 256)")
    ray = p.add_argument_group("the ray engine (pip install galaxy_vae[scale])")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this process (default); ray: Ray Data, shards of the dataset encoded by a pool "
                          "of actors on the local machine or the cluster at --address")
    ray.add_argument("--workers", type=int, default=1, help="actors, each holding the models (default 1)")
    ray.add_argument("--num-cpus", type=float, default=1, help="CPUs per actor, and its torch threads (default 1)")
    ray.add_argument("--num-gpus", type=float, default=0, help="GPUs per actor (default 0; e.g. 1, or 0.5 to share)")
    ray.add_argument("--address", default=None,
                     help="a running Ray cluster, e.g. HEAD:6379 (default: $RAY_ADDRESS, else a local Ray instance)")
    ray.add_argument("--shards", type=Path, default=None,
                     help="folder for the Parquet shards of the embeddings (default: .catalogue/<dataset>/embed_ray "
                          "beside the dataset)")
    ray.add_argument("--labels", type=Path, default=None, help="a folder's id,label CSV, as for import")
    ray.add_argument("--class-names", nargs="+", metavar="NAME", help="a folder's class names, as for import")
    ray.add_argument("--no-crop", action="store_true",
                     help="a folder's pictures are framed like Galaxy10, as for import")
    ray.add_argument("--dataset-out", type=Path, default=None,
                     help="a folder's dataset file, written from the cutouts read (default: FOLDER.h5 beside it)")
    p.set_defaults(func=commands.cmd_embed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except GalaxyVAEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
