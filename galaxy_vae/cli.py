"""Command-line interface: ``python -m galaxy_vae COMMAND ...``.

Each command is a small ``cmd_*`` function over the library; ``build_parser`` wires the flags.
Errors a user can fix (:class:`GalaxyVAEError`) print as one message and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from galaxy_vae.errors import GalaxyVAEError

log = logging.getLogger("galaxy_vae")


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


# --- data -------------------------------------------------------------------------------------

def cmd_info(args) -> int:
    from galaxy_vae.data import describe, open_dataset

    summary = describe(open_dataset(args.file))
    if args.json:
        _print_json(summary)
        return 0
    print(f"{args.file}: {summary['n']} images of {'x'.join(map(str, summary['image_shape']))}")
    print(f"source: {summary['source']}")
    width = max(len(name) for name in summary["classes"])
    for i, (name, count) in enumerate(summary["counts"].items()):
        print(f"  {i:>2}  {name:<{width}}  {count:>6}")
    return 0


def cmd_import(args) -> int:
    from galaxy_vae.importer import import_folder

    report = import_folder(args.folder, args.labels, args.out, args.class_names,
                           galaxy_zoo_frame=not args.no_crop, source=args.source,
                           workers=args.workers)
    for name, reason in report.unreadable:
        print(f"skipped unreadable {name}: {reason}", file=sys.stderr)
    for name in report.unlabelled:
        print(f"skipped unlabelled {name}: no row in {args.labels}", file=sys.stderr)
    if report.missing:
        print(f"{len(report.missing)} ids in {args.labels} have no picture "
              f"(first: {', '.join(report.missing[:5])})", file=sys.stderr)
    print(f"wrote {report.written} galaxies to {report.out} "
          f"({len(report.unreadable)} unreadable, {len(report.unlabelled)} unlabelled skipped)")
    return 0


def cmd_fetch(args) -> int:
    from galaxy_vae.fetch import REGISTRY, REUSE, fetch_dataset

    result = fetch_dataset(args.dataset, args.dir, replace=args.replace)
    done = "already there" if result.action == REUSE else "downloaded"
    print(f"{REGISTRY[args.dataset].title}: {done}, sha256 verified: {result.path}")
    print(f"next: python -m galaxy_vae info {result.path}")
    return 0


# --- search -----------------------------------------------------------------------------------

def cmd_search(args) -> int:
    """Nearest catalogue galaxies of each picture: the map page's upload search, from a shell."""
    import numpy as np

    from galaxy_vae.catalogue import Catalogue, ModelSpace
    from galaxy_vae.checkpoints import DEFAULT_CHECKPOINT, load_checkpoint
    from galaxy_vae.data import open_for_search
    from galaxy_vae.framing import catalogue_extent
    from galaxy_vae.images import prepare_upload
    from galaxy_vae.search import neighbour_table

    data = open_for_search(args.data, challenge=not args.all_classes)
    target = catalogue_extent(data.images) if args.framing == "auto" else None
    prepared, failed = [], []
    for path in args.image:  # read every picture before any work, so one bad file costs nothing
        try:
            prepared.append(prepare_upload(path, framing=args.framing, target_fraction=target).stored)
        except GalaxyVAEError as exc:
            failed.append(f"{path}: {exc}")
    if failed:
        print("error: " + "\n".join(failed), file=sys.stderr)
        return 2
    catalogue = Catalogue(data, ModelSpace(load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT)), progress=not args.json)
    found = catalogue.query_images(np.stack(prepared), args.k, invariant=args.invariant)
    results = [neighbour_table(found, data, row) for row in range(len(prepared))]
    if args.json:
        _print_json(results)
        return 0
    for path, rows in zip(args.image, results):
        print(f"{path}:")
        for r in rows:
            print(f"  {r['rank']:>3}  {r['id']:<20}  {r['class_name']:<28}  {r['distance']:.4f}")
    return 0


def cmd_generate(args) -> int:
    """Lookalikes of a picture: the Milky Way page's grid from a shell (same preparation, sampling, decoding)."""
    from galaxy_vae import lookalikes
    from galaxy_vae.catalogue import Catalogue, ModelSpace
    from galaxy_vae.checkpoints import DEFAULT_CHECKPOINT, load_checkpoint
    from galaxy_vae.data import open_for_search
    from galaxy_vae.fetch import data_dir
    from galaxy_vae.framing import catalogue_extent
    from galaxy_vae.images import prepare_upload

    problems = [msg for bad, msg in (
        (args.n < 1, f"-n must be at least 1, not {args.n}"),
        (not 0 <= args.temperature < float("inf"), f"--temperature must be a number >= 0, not {args.temperature}"),
        (args.out.suffix.lower() != ".png", f"--out must end in .png, not {args.out.name!r}")) if bad]
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    data = open_for_search(args.data or data_dir() / "gz1_sample.h5", challenge=not args.all_classes)
    target = catalogue_extent(data.images) if args.framing == "auto" else None
    query = prepare_upload(args.near, framing=args.framing, target_fraction=target).stored
    ckpt = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT)
    looks = lookalikes.sample_lookalikes(Catalogue(data, ModelSpace(ckpt)), query, args.n, args.temperature, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(lookalikes.grid_png(looks.images))
    rows, cols = lookalikes.grid_shape(args.n)
    print(f"wrote {args.out}: {args.n} lookalikes of {args.near.name} in a {rows}x{cols} grid "
          f"(temperature {args.temperature:g}, seed {args.seed}, {ckpt.path.name})")
    for i, (row, dist, label, p) in enumerate(zip(looks.nearest, looks.distances, looks.predicted, looks.probability), 1):
        print(f"  {i:>3}  predicted {looks.class_names[label]:<20} ({p:4.0%})  nearest real galaxy "
              f"{data.ids[row]} ({data.class_names[data.labels[row]]}, d={dist:.4f})")
    return 0


# --- models: train, evaluate, embed -----------------------------------------------------------

MODEL_NAMES = ("dense_ae", "conv_vae", "galaxy_vae")  # models.MODELS, named here so --help needs no torch

def _train_command(args) -> str:
    """The command line that reproduces this training run, flags in a fixed order."""
    import shlex

    parts = ["python", "-m", "galaxy_vae", "train", "--model", args.model, "--data", str(args.data)]
    for flag in ("epochs", "batch_size", "lr", "beta", "class_weight", "class_balance", "seed",
                 "split_seed", "val_fraction", "eval_every"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    if args.no_augment:
        parts.append("--no-augment")
    if args.classes is not None:
        parts += ["--classes", *map(str, args.classes)]
    if args.all_classes:
        parts.append("--all-classes")
    if args.model_config:
        parts += ["--model-config", args.model_config]
    return shlex.join(parts + ["--out", str(args.out)])


def cmd_train(args) -> int:
    from galaxy_vae.train import default_config, train_model

    try:
        model_config = json.loads(args.model_config) if args.model_config else None
    except json.JSONDecodeError as exc:
        print(f"error: --model-config is not JSON ({exc}); e.g. '{{\"head_hidden\": 0}}'", file=sys.stderr)
        return 2
    cfg = default_config(args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         beta=args.beta, class_weight=args.class_weight, class_balance=args.class_balance,
                         seed=args.seed, split_seed=args.split_seed, val_fraction=args.val_fraction,
                         eval_every=args.eval_every, device=args.device,
                         augment=False if args.no_augment else None)
    path, meta = train_model(args.model, args.data, args.out, cfg, model_config, classes=args.classes,
                             challenge=not args.all_classes, progress=not args.quiet,
                             command=_train_command(args))
    m = meta["metrics"]
    print(f"{'interrupted: ' if meta['interrupted'] else ''}saved {path} after {meta['epochs_done']} "
          f"epoch(s) in {meta['train_seconds'] / 60:.1f} min")
    print("validation: " + ", ".join(f"{k}={m[k]:.4f}" for k in
          ("precision_at_10", "macro_precision_at_10", "pixel_macro_precision_at_10", "recon_mse") if k in m))
    return 130 if meta["interrupted"] else 0


def cmd_evaluate(args) -> int:
    from galaxy_vae.checkpoints import DEFAULT_CHECKPOINT, load_checkpoint
    from galaxy_vae.data import open_dataset
    from galaxy_vae.evaluate import evaluate_checkpoint

    ckpt = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT)
    result = evaluate_checkpoint(ckpt, open_dataset(args.data), pixel=not args.no_pixel)
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['model']} ({ckpt.path.name}) on {result['dataset']}: {result['n_val']} validation "
          f"galaxies, neighbours among {result['n_train']} training galaxies")
    spaces = ["", "pixel_"] if not args.no_pixel else [""]
    print(f"  {'':<28}" + "".join(f"{('latent' if s == '' else 'pixels'):>10}" for s in spaces))
    for key in ("precision_at_10", "macro_precision_at_10", "precision_at_10_morph", "macro_precision_at_10_morph"):
        print(f"  {key:<28}" + "".join(f"{result[s + key]:>10.4f}" for s in spaces))
    print(f"  {'recon_mse (64x64)':<28}{result['recon_mse']:>10.5f}")
    return 0


def cmd_embed(args) -> int:
    import numpy as np

    from galaxy_vae.checkpoints import DEFAULT_CHECKPOINT, dataset_for, load_checkpoint
    from galaxy_vae.data import open_dataset
    from galaxy_vae.embed import BATCH, encode_images

    if args.out.suffix.lower() not in (".csv", ".npy"):
        print(f"error: --out must end in .csv or .npy, not {args.out.name!r}", file=sys.stderr)
        return 2
    ckpt = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT)
    data = dataset_for(ckpt.meta, open_dataset(args.data))
    z = encode_images(ckpt.model, data.images, batch_size=args.batch_size or BATCH, progress=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix.lower() == ".npy":
        np.save(args.out, z)  # (N, d) float32, rows in dataset order
    else:
        import csv

        with open(args.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label", *[f"z{i}" for i in range(z.shape[1])]])
            for gid, label, row in zip(data.ids, data.labels, z):
                w.writerow([gid, data.class_names[label], *[f"{v:.6g}" for v in row]])
    print(f"wrote {len(z)} latents of dimension {z.shape[1]} ({ckpt.name}) to {args.out}")
    return 0


# --- benchmarks ---------------------------------------------------------------------------------

def cmd_bench(args) -> int:
    """The performance table: encoding, search, training, and the app's server times and memory."""
    from galaxy_vae.bench import format_table, run_bench

    report = run_bench(quick=args.quick, data_path=args.data, checkpoint_path=args.checkpoint,
                       progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    if args.json:
        _print_json(report)
    else:
        print(format_table(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m galaxy_vae",
                                     description="Explore the latent space of galaxy images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="summarise a dataset file")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON: n, image_shape, classes, counts, source")
    p.set_defaults(func=cmd_info)

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
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("fetch", help="download Galaxy10 SDSS or DECaLS, checked against its published sha256")
    p.add_argument("dataset", choices=["galaxy10", "galaxy10-decals"])  # the names in fetch.REGISTRY
    p.add_argument("--dir", type=Path, default=None,
                   help="download folder (default: $GALAXY_VAE_DATA, else data/ in the checkout)")
    p.add_argument("--replace", action="store_true",
                   help="download over a file of the same name whose sha256 differs (default: refuse)")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("search", help="nearest catalogue galaxies of pictures (as the map page's upload)")
    p.add_argument("--checkpoint", type=Path, default=None, help="model checkpoint (default: the improved VAE)")
    p.add_argument("--data", type=Path, required=True, help="dataset to search (HDF5)")
    p.add_argument("--image", type=Path, nargs="+", required=True, metavar="PATH", help="pictures to look up")
    p.add_argument("-k", type=int, default=10, help="neighbours per picture (default 10)")
    p.add_argument("--invariant", action="store_true", help="match any rotation or mirror image of the picture")
    p.add_argument("--framing", choices=("auto", "none"), default="auto",
                   help="auto: pad/crop so the galaxy fills the frame as catalogue galaxies do (default)")
    p.add_argument("--all-classes", action="store_true",
                   help="search all ten Galaxy10 SDSS classes (default: the challenge's six face-on ones)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list, one entry per picture: [{"rank", "index", "id", "label", "class_name", "distance"}, ...]')
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("generate", help="a grid of generated lookalikes of a picture (as the Milky Way page)")
    p.add_argument("--checkpoint", type=Path, default=None, help="a VAE checkpoint (default: the improved VAE)")
    p.add_argument("--near", type=Path, required=True, metavar="IMAGE", help="the picture to sample lookalikes of")
    p.add_argument("-n", type=int, default=16, help="lookalikes, tiled as square as possible (default 16: 4x4)")
    p.add_argument("--temperature", type=float, default=2.0,
                   help="radius in posterior standard deviations: z = mu + sigma*e, |e| <= T (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0): same seed, same grid")
    p.add_argument("--framing", choices=("auto", "none"), default="auto",
                   help="auto: pad/crop so the galaxy fills the frame as catalogue galaxies do (default)")
    p.add_argument("--data", type=Path, default=None,
                   help="catalogue for the nearest real galaxies (default: gz1_sample.h5 in $GALAXY_VAE_DATA or data/)")
    p.add_argument("--all-classes", action="store_true",
                   help="Galaxy10 SDSS: all ten classes (default: the challenge's six face-on ones)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train", help="train a model on a dataset's training split and save a checkpoint")
    p.add_argument("--model", choices=MODEL_NAMES, required=True, help="architecture (registry name)")
    p.add_argument("--data", type=Path, required=True, help="dataset (HDF5)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--epochs", type=int, help="passes over the training split")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--beta", type=float, help="weight of the KL term (VAEs)")
    p.add_argument("--class-weight", type=float, help="weight of the class head's cross-entropy (VAEs)")
    p.add_argument("--class-balance", type=float, help="class weights (1/count)**B: 0 plain, 1 balanced")
    p.add_argument("--seed", type=int, help="seed of weights, batch order, augmentation and noise")
    p.add_argument("--split-seed", type=int, help="seed of the stratified train/validation split")
    p.add_argument("--val-fraction", type=float, help="share of each class held out (default 0.2)")
    p.add_argument("--eval-every", type=int, help="epochs between validation retrieval metrics")
    p.add_argument("--no-augment", action="store_true", help="no random rotations/flips")
    p.add_argument("--classes", type=int, nargs="+", metavar="N", help="train on these class numbers only")
    p.add_argument("--all-classes", action="store_true",
                   help="Galaxy10 SDSS: all ten classes (default: the challenge's six face-on ones)")
    p.add_argument("--model-config", metavar="JSON", help='architecture overrides, e.g. \'{"head_hidden": 0}\'')
    p.add_argument("--device", help="cuda or cpu (default: the GPU when there is one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="held-out retrieval precision@10 and reconstruction error of a checkpoint")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the improved VAE)")
    p.add_argument("--data", type=Path, required=True, help="the dataset it was trained on (HDF5)")
    p.add_argument("--json", action="store_true", help="print every figure as JSON")
    p.add_argument("--no-pixel", action="store_true", help="skip the (slow) pixel-space baseline")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("embed", help="write the latents of every galaxy in a dataset")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the improved VAE)")
    p.add_argument("--data", type=Path, required=True, help="dataset (HDF5)")
    p.add_argument("--out", type=Path, required=True, help=".csv (id,label,z0,z1,...) or .npy (N x d float32)")
    p.add_argument("--batch-size", type=int, default=None, help="images per model call (default: embed.BATCH, 256)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("bench", help="measure the performance table (encoding, search, pages, memory) on this machine")
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions, no training epoch, no browser (cold start skipped): about a minute")
    p.add_argument("--json", action="store_true", help="print the report as JSON (figures, skipped, goals, machine)")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset, tiled to Galaxy10 size if smaller (default: gz1_sample.h5 in $GALAXY_VAE_DATA or data/)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model for encoding, search and training (default: the app's default checkpoint)")
    p.set_defaults(func=cmd_bench)
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
