"""guard: a cross-domain guard simulator.

Data flows one way through the modules: bytes in, parse, normalise, scan, decide,
redact, re-check, sign, publish. No module imports one further up that chain.
"""

__version__ = "0.1.0"
