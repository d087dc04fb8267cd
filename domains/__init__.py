"""Simulated network domains: brokers, traffic generators and sinks (installed as ``guard.domains``)."""
