"""``python -m benchmarks [--quick] [--json] [--data FILE] [--checkpoint C]``: the performance table."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmarks.bench import format_table, run_bench
from galaxy_vae.errors import GalaxyVAEError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="Measure galaxy_vae's performance table on this machine.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions, no training epoch, no browser (cold start skipped): about a minute")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON (figures, skipped, goals, machine)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset, tiled to Galaxy10 size if smaller (default: the offline sample)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="model for encoding, search and training (default: the app's default checkpoint)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = run_bench(quick=args.quick, data_path=args.data, checkpoint_path=args.checkpoint,
                           progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    except GalaxyVAEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
