"""guard: a cross-domain guard simulator.

Data flows one way through the modules: bytes in, parse, normalise, scan, decide,
redact, re-check, sign, publish. No module imports one further up that chain.
"""

import os as _os

# numpy's OpenBLAS starts a thread per core that spins after use; the guard does no
# linear algebra, and on a 2-core machine those threads took ~1.5% of a decision run's
# CPU away from the other worker, the brokers and the event loop (seen with perf).
# Must be set before numpy is first imported; an operator's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
