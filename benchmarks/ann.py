"""``python -m benchmarks.ann [--rows N] [--json]``: which approximate index, measured.

Builds each candidate (faiss IVF and HNSW, as :func:`galaxy_vae.search.build_ann` makes them) over
N (default 1,000,000) similarity embeddings drawn like the sample's (:func:`compute.measure_million`)
and reports, per method, build time, index size and resident memory added, k=12 query p50/p95 and
recall@10 against brute force, plain and rotation-invariant (8 views). The app's default
(``search.ANN_DEFAULT``) is the one this chose; benchmarks/README.md has the figures. Minutes of
two cores: run it under the shared CPU lock.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import compute
from galaxy_vae.checkpoints import load_checkpoint
from galaxy_vae.hdf5 import open_for_search
from galaxy_vae.paths import default_dataset, encoder_checkpoint
from galaxy_vae.search import ANN_METHODS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ann", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=compute.MILLION)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--recall", type=int, default=100)
    parser.add_argument("--encoder", type=Path, default=None,
                        help="similarity checkpoint whose embeddings to draw like (default: the shipped encoder, "
                             "else a seeded untrained one)")
    args = parser.parse_args(argv)
    encoder = args.encoder or encoder_checkpoint()
    embeddings, note = compute.similarity_embeddings(open_for_search(default_dataset()),
                                                     load_checkpoint(encoder) if encoder else None)
    compute.MILLION = args.rows  # measure_million draws this many rows
    report = {"rows": args.rows, "embedding": note}
    for method in ANN_METHODS:
        print(f"ann: {method} over {args.rows:,} rows", file=sys.stderr, flush=True)
        report[method] = compute.measure_million(embeddings, args.queries, args.recall, method=method, prefix="knn")
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
