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
