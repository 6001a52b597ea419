"""galaxy_vae's performance measurements: ``python -m benchmarks`` (``make bench``), run from a checkout."""
