"""What each ``python -m galaxy_vae COMMAND`` does: one small ``cmd_*`` function per command over
the library (the flags are wired in :mod:`galaxy_vae.cli`). Heavy imports happen inside the
commands, so ``--help`` and ``info`` never load torch."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from galaxy_vae.errors import GalaxyVAEError


def _finite(obj):
    """``obj`` with NaN and infinities as None, so what we print is always valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _print_json(obj) -> None:
    json.dump(_finite(obj), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


# --- data -------------------------------------------------------------------------------------

def cmd_info(args) -> int:
    from galaxy_vae.hdf5 import describe

    summary = describe(args.file)
    if args.json:
        _print_json(summary)
        return 0
    shape, loaded = "x".join(map(str, summary["image_shape"])), "x".join(map(str, summary["loaded_as"]))
    print(f"{args.file}: {summary['n']} images of {shape}" + ("" if shape == loaded else f" (read as {loaded})"))
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

def _prepare_pictures(paths, data, args) -> tuple[list, list[str]]:
    """Every picture prepared as the app prepares an upload (--framing, --keep-sky): (cutouts,
    error messages naming the files). All are read before any work, so one bad file costs nothing."""
    from galaxy_vae.cutouts import prepare_upload
    from galaxy_vae.extent import catalogue_extent
    from galaxy_vae.sky import catalogue_sky

    target = catalogue_extent(data.images) if args.framing == "auto" else None
    sky = None if args.keep_sky else catalogue_sky(data.images)
    prepared, failed = [], []
    for path in paths:
        try:
            prepared.append(prepare_upload(path, framing=args.framing, target_fraction=target, sky=sky).stored)
        except GalaxyVAEError as exc:
            failed.append(str(exc))
    return prepared, failed


def cmd_search(args) -> int:
    """Nearest catalogue galaxies of each picture: the map page's upload search, from a shell."""
    from galaxy_vae.catalogue import Catalogue, ModelSpace, PixelSpace
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.hdf5 import open_for_search
    from galaxy_vae.lookalikes import make_similarity, similarity_files
    from galaxy_vae.paths import DENSE_AE_NAME, ENCODER_NAME, default_checkpoint
    from galaxy_vae.search import neighbour_table

    # a file the user named is checked (and loaded once) even when the similarity does not read it
    named = load_checkpoint(args.checkpoint) if args.checkpoint else None
    files = similarity_files(args.checkpoint or default_checkpoint())
    key = args.similarity or ("invariant" if args.invariant else next(iter(files)))
    if key not in files:
        needed = ENCODER_NAME if key == "encoder" else DENSE_AE_NAME
        raise GalaxyVAEError(f"No {key} similarity here", expected=f"{needed} in the checkpoints folder",
                             found="no such file", fix=f"Choose one of: {', '.join(files)}.")
    data = open_for_search(args.data, challenge=not args.all_classes, mapped=True)
    prepared, failed = _prepare_pictures(args.image, data, args)
    if failed:
        print("error: " + "\n".join(failed), file=sys.stderr)
        return 2
    if files[key] is None:
        space = PixelSpace()
    elif named is not None and Path(named.path).resolve() == Path(files[key]).resolve():
        space = ModelSpace(named)
    else:
        space = ModelSpace(load_checkpoint(files[key]))
    sim = make_similarity(key, Catalogue.open(data, space, progress=not args.json))
    results = [neighbour_table(sim.look_up(image, args.k).neighbours, data) for image in prepared]
    if args.json:
        _print_json(results)
        return 0
    print(f"similarity: {sim.name}")
    for path, rows in zip(args.image, results):
        print(f"{path}:")
        for r in rows:
            print(f"  {r['rank']:>3}  {r['id']:<20}  {r['class_name']:<28}  {r['distance']:.4f}")
    return 0


def cmd_generate(args) -> int:
    """Lookalikes of a picture: the Milky Way page's grid from a shell (same preparation, sampling, decoding)."""
    from galaxy_vae import lookalikes
    from galaxy_vae.catalogue import Catalogue, ModelSpace
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.hdf5 import open_for_search
    from galaxy_vae.paths import default_dataset
    from galaxy_vae.raster import grid_png, grid_shape

    problems = [msg for bad, msg in (
        (args.n < 1, f"-n must be at least 1, not {args.n}"),
        (not 0 <= args.temperature < float("inf"), f"--temperature must be a number >= 0, not {args.temperature}"),
        (not 0 <= args.variety < float("inf"), f"--variety must be a number >= 0, not {args.variety}"),
        (args.out.suffix.lower() != ".png", f"--out must end in .png, not {args.out.name!r}")) if bad]
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    data = open_for_search(args.data or default_dataset(), challenge=not args.all_classes, mapped=True)
    prepared, failed = _prepare_pictures([args.near], data, args)
    if failed:
        print("error: " + failed[0], file=sys.stderr)
        return 2
    query = prepared[0]
    ckpt = load_checkpoint(args.checkpoint)
    cat = Catalogue.open(data, ModelSpace(ckpt))
    looks = lookalikes.sample_lookalikes(cat, query, args.n, args.temperature, args.seed, args.variety)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(grid_png(looks.images))
    rows, cols = grid_shape(args.n)
    print(f"wrote {args.out}: {args.n} lookalikes of {args.near.name} in a {rows}x{cols} grid "
          f"(temperature {args.temperature:g}, seed {args.seed}"
          + (f", variety {args.variety:g}" if looks.details is not None else "") + f", {ckpt.path.name}; "
          f"they differ by {lookalikes.diversity(looks.images):.3f} rms)")
    described = zip(looks.nearest, looks.distances, looks.predicted, looks.probability)
    for i, (row, dist, label, p) in enumerate(described, 1):
        print(f"  {i:>3}  predicted {looks.class_names[label]:<20} ({p:4.0%})  nearest real galaxy "
              f"{data.ids[row]} ({data.class_names[data.labels[row]]}, d={dist:.4f})")
    return 0


# --- models: train, evaluate, embed -----------------------------------------------------------

def _train_command(args) -> str:
    """The command line that reproduces this training run: every flag given, in a fixed order."""
    import shlex

    from galaxy_vae.configs import AugmentConfig, TrainConfig, flag_fields

    parts = ["python", "-m", "galaxy_vae", "train", "--model", args.model, "--data", str(args.data)]
    for f in flag_fields(TrainConfig) + flag_fields(AugmentConfig):
        value = getattr(args, f.name)
        if value is None:
            continue
        name = f.name.replace("_", "-")
        if isinstance(f.default, bool):  # given on the command line: kept as given
            parts.append(f"--{name}" if value else f"--no-{name}")
        else:
            parts += [f"--{name}", str(value)]
    if args.classes is not None:
        parts += ["--classes", *map(str, args.classes)]
    if args.all_classes:
        parts.append("--all-classes")
    if args.model_config:
        parts += ["--model-config", args.model_config]
    if args.frames:
        parts += ["--frames", str(args.frames)]
    return shlex.join(parts + ["--out", str(args.out)])


def cmd_train(args) -> int:
    from dataclasses import replace

    from galaxy_vae.configs import AugmentConfig, default_config, flag_fields
    from galaxy_vae.models import MODELS
    from galaxy_vae.paths import frames_dir
    from galaxy_vae.train import train_model

    if args.model not in MODELS:
        raise GalaxyVAEError(f"Unknown model {args.model!r}", expected="a name in the model registry",
                             found=repr(args.model), fix="Choose one of: " + ", ".join(MODELS) + ".")
    try:
        model_config = json.loads(args.model_config) if args.model_config else None
    except json.JSONDecodeError as exc:
        print(f"error: --model-config is not JSON ({exc}); e.g. '{{\"head_hidden\": 0}}'", file=sys.stderr)
        return 2
    cfg = default_config(args.model, **{f.name: getattr(args, f.name) for f in flag_fields()})
    aug = replace(AugmentConfig(), **{f.name: getattr(args, f.name) for f in flag_fields(AugmentConfig)
                                      if getattr(args, f.name) is not None})
    path, meta = train_model(args.model, args.data, args.out, cfg, model_config, classes=args.classes,
                             challenge=not args.all_classes, progress=not args.quiet,
                             command=_train_command(args), frames=args.frames or frames_dir(), augment_config=aug)
    m = meta["metrics"]
    print(f"{'interrupted: ' if meta['interrupted'] else ''}saved {path} after {meta['epochs_done']} "
          f"epoch(s) in {meta['train_seconds'] / 60:.1f} min")
    print("validation: " + ", ".join(f"{k}={m[k]:.4f}" for k in
          ("precision_at_10", "macro_precision_at_10", "pixel_macro_precision_at_10", "recon_mse") if k in m))
    return 130 if meta["interrupted"] else 0


def cmd_evaluate(args) -> int:
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.evaluate import evaluate_checkpoint
    from galaxy_vae.hdf5 import open_dataset

    ckpt = load_checkpoint(args.checkpoint)
    data = open_dataset(args.data)
    result = evaluate_checkpoint(ckpt, data, pixel=not args.no_pixel)
    if args.robustness:
        from galaxy_vae.checkpoints import dataset_for
        from galaxy_vae.extent import catalogue_extent
        from galaxy_vae.paths import frames_dir
        from galaxy_vae.robustness import robustness_report

        seen = dataset_for(ckpt.meta, data)
        result.update(robustness_report(
            ckpt.model, seen, args.frames or frames_dir(), result["split_seed"], result["val_fraction"],
            framing=args.framing, match_sky=not args.keep_sky, pixel=not args.no_pixel, progress=not args.json,
            target_fraction=catalogue_extent(seen.images) if args.framing == "auto" else None))
        if result["robustness"] is None:
            print(f"robustness skipped: {result['robustness_skipped']}", file=sys.stderr)
    if args.realism:
        from galaxy_vae.realism_model import realism_of

        if args.realism_n < 4 or args.processes < 1:
            print(f"error: --realism-n must be at least 4 (found {args.realism_n}) and --processes at least 1 "
                  f"(found {args.processes})", file=sys.stderr)
            return 2
        result["realism"] = realism_of(ckpt, data, args.realism_n, args.seed, args.processes)[0]
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['model']} ({ckpt.path.name}) on {result['dataset']}: {result['n_val']} validation "
          f"galaxies, neighbours among {result['n_train']} training galaxies")
    spaces = ["", "pixel_"] if not args.no_pixel else [""]
    print(f"  {'':<28}" + "".join(f"{('latent' if s == '' else 'pixels'):>10}" for s in spaces))
    for key in ("precision_at_10", "macro_precision_at_10", "precision_at_10_morph", "macro_precision_at_10_morph"):
        print(f"  {key:<28}" + "".join(f"{result[s + key]:>10.4f}" for s in spaces))
    if "recon_mse" in result:
        print(f"  {'recon_mse (64x64)':<28}{result['recon_mse']:>10.5f}")
    if result.get("realism"):
        _print_realism(result["realism"])
    if result.get("robustness"):
        print(f"framing robustness, macro precision@10 of {result['robustness_queries']} validation galaxies "
              "re-cut from their raw frames (x standard):")
        for s in [s for s in spaces if f"{s}robustness" in result]:
            figures = result[f"{s}robustness"]
            print(f"  {('model' if s == '' else 'pixels'):<8}" + "  ".join(
                f"{v} {x:.3f} ({x / figures['standard']:.2f}x)" for v, x in figures.items()))
    return 0


def _print_realism(r: dict) -> None:
    from galaxy_vae.realism import STATS

    print(f"realism: statmorph on {r['n']} validation galaxies (W1; x the real-vs-real baseline)")
    print(f"  {'':<16}" + "".join(f"{s:>20}" for s in STATS))
    for key in ("real_vs_real", "reconstructions", "samples"):
        cells = []
        for s in STATS:
            w, ratio = r[key][s], (r["ratios"].get(key) or {}).get(s) if key != "real_vs_real" else None
            cells.append("—" if w is None else f"{w:.4f}" + (f" ({ratio:.1f}x)" if ratio is not None else ""))
        print(f"  {key:<16}" + "".join(f"{c:>20}" for c in cells))
    print("  flags: " + "; ".join(f"{k} {v['used']}/{v['total']} used" for k, v in r["flags"].items() if v))
    if r.get("edge_on_axis_ratio"):
        e = r["edge_on_axis_ratio"]
        num = lambda v: "—" if v is None else f"{v:.3f}"
        print(f"  edge-on axis ratio (median of {e['n']}): real {num(e['real_median'])}, reconstructions "
              f"{num(e['reconstructions_median'])}, samples {num(e['samples_median'])}")
    bp = r["band_power"]
    print(f"  samples' asymmetry inside the real 16-84 % range: {r['asymmetry_in_real_range']:.2f}; 4-8 px band "
          "power: " + ", ".join(f"{k} {v:.4f}" for k, v in bp.items() if v is not None))


def cmd_embed(args) -> int:
    if args.engine == "ray":
        return _embed_ray(args)
    if args.data.is_dir():
        raise GalaxyVAEError(f"Cannot embed the folder {args.data} here", expected="an HDF5 dataset file",
                             found="a folder", fix="Pass --engine ray (with --labels), or import the folder first: "
                                                   "python -m galaxy_vae import FOLDER --labels CSV --out FILE.h5.")
    if args.out is None:
        return _embed_catalogues(args)
    import numpy as np

    from galaxy_vae.checkpoints import dataset_for, load_checkpoint
    from galaxy_vae.embed import BATCH, encode_images
    from galaxy_vae.hdf5 import open_dataset

    if args.out.suffix.lower() not in (".csv", ".npy"):
        print(f"error: --out must end in .csv or .npy, not {args.out.name!r}", file=sys.stderr)
        return 2
    ckpt = load_checkpoint(args.checkpoint)
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


def _embed_catalogues(args) -> int:
    """``embed`` without --out: the persisted catalogue of every similarity the app offers with the
    checkpoint (its latent, the galaxy encoder, the 64-D autoencoder; pixels with --pixels), as
    the app opens it, so a server starts by reading instead of encoding."""
    import time

    from galaxy_vae.catalogue import Catalogue, ModelSpace, PixelSpace
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.hdf5 import open_for_search
    from galaxy_vae.lookalikes import similarity_files
    from galaxy_vae.paths import default_checkpoint

    data = open_for_search(args.data, challenge=not args.all_classes, mapped=True)
    files = {p for key, p in similarity_files(args.checkpoint or default_checkpoint()).items() if p is not None}
    spaces = [ModelSpace(load_checkpoint(p)) for p in sorted(files)] + ([PixelSpace()] if args.pixels else [])
    for space in spaces:
        start = time.perf_counter()
        cat = Catalogue.open(data, space, progress=True)
        cat.persist_all(progress=True)
        where = cat.store.folder if cat.store else "nowhere (the dataset's folder cannot be written)"
        state = "rebuilt" if cat.store and cat.store.rebuilt else "checked and completed"
        print(f"{space.label}: {len(cat):,} galaxies, {state} in {time.perf_counter() - start:.1f} s "
              f"({cat.index.method} index) -> {where}")
    return 0


def _embed_ray(args) -> int:
    """``embed --engine ray``: the same persisted catalogue, its encoding spread over Ray actors
    (:mod:`galaxy_vae.embed_ray`); a folder of cutouts is read, framed and written as ``import`` would."""
    import numpy as np

    from galaxy_vae import embed_ray
    from galaxy_vae.catalogue import Catalogue, PixelSpace
    from galaxy_vae.hdf5 import open_for_search
    from galaxy_vae.lookalikes import similarity_files
    from galaxy_vae.paths import default_checkpoint
    from galaxy_vae.store import FOLDER

    problems = [msg for bad, msg in (
        (args.out is not None, "--out exports with the local engine; the ray engine writes Parquet shards (--shards)"),
        (args.workers < 1, f"--workers must be at least 1, not {args.workers}"),
        (not args.num_cpus > 0, f"--num-cpus must be above 0, not {args.num_cpus}"),
        (not args.num_gpus >= 0, f"--num-gpus must be 0 or more, not {args.num_gpus}"),
        (args.data.is_dir() and args.labels is None, f"{args.data} is a folder: pass its id,label CSV with --labels"),
    ) if bad]
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    challenge = not args.all_classes
    checkpoints = sorted({p for p in similarity_files(args.checkpoint or default_checkpoint()).values() if p})
    if args.data.is_dir():
        source, pictures = embed_ray.folder_source(args.data, args.labels, args.class_names, not args.no_crop)
        dataset = args.dataset_out or args.data.parent / f"{args.data.name}.h5"
    else:
        source, dataset = embed_ray.hdf5_source(args.data, challenge), args.data
    embed_ray.start_ray(args.address)
    shard_dir = args.shards or dataset.parent / FOLDER / dataset.stem / "embed_ray"
    result = embed_ray.run(source, checkpoints, shard_dir, workers=args.workers, cpus_per_worker=args.num_cpus,
                           gpus_per_worker=args.num_gpus, batch_size=args.batch_size)
    print(f"embedded {result.n:,} galaxies with {', '.join(p.name for p in checkpoints)} on {args.workers} Ray "
          f"worker(s) in {result.seconds:.1f} s ({result.n / result.seconds:,.0f} images/s); "
          f"{len(result.shards)} shards in {shard_dir}")
    file_rows = None
    if source.is_folder:
        ok = result.columns["ok"]
        for path, error in zip(pictures.files, result.columns["error"]):
            if error:
                print(f"skipped unreadable {path.name}: {error}", file=sys.stderr)
        embed_ray.write_folder_dataset(result, pictures, dataset)
        file_rows = np.flatnonzero(ok)
        print(f"wrote {int(ok.sum())} galaxies to {dataset} ({len(ok) - int(ok.sum())} unreadable, "
              f"{len(pictures.unlabelled)} unlabelled skipped)")
    cats = embed_ray.persist(result, dataset, checkpoints, file_rows, challenge)
    if args.pixels:
        cats.append(Catalogue.open(open_for_search(dataset, challenge=challenge, mapped=True), PixelSpace(), True))
        cats[-1].persist_all(progress=True)
    for cat in cats:
        where = cat.store.folder if cat.store else "memory only (the dataset's folder cannot be written)"
        print(f"{cat.space.label}: {len(cat):,} galaxies ({cat.index.method} index) -> {where}")
    return 0
