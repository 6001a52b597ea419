"""`streamlit run` with every script run timed: ``python -m benchmarks.serve TIMINGS.jsonl APP [flags]``.

Exactly `streamlit run APP [flags]`, plus :func:`benchmarks.timing.install` first.
"""

import sys

from benchmarks import timing

if __name__ == "__main__":
    timing.install(sys.argv[1])
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *sys.argv[2:]]
    sys.exit(cli.main())
