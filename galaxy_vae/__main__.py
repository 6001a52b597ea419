"""`python -m galaxy_vae ...` runs the command-line interface."""

from galaxy_vae.cli import main

raise SystemExit(main())
