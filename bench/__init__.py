"""Benchmarks, run as ``guard bench NAME --json`` (installed as ``guard.bench``).

Each module defines ``add_arguments(parser)`` and ``run(args) -> dict``. Peers are
measured in the same run as our own code and reported as ratios, because the
2-core machines this runs on are noisy.
"""
