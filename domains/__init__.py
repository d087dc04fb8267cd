"""Simulated network domains: brokers, traffic generators and sinks.

Installed as ``guard.domains``.
"""
