"""MQTT topic names and filters: validity, matching and overlap (MQTT 5 section 4.7).

Shared by the topology (to prove that no client may write a topic that feeds the
guard) and by the in-process transport (subscriptions and ACLs), so that both use
exactly the semantics mosquitto applies.
"""

from __future__ import annotations

_MAX_TOPIC_BYTES = 65535


def valid_topic(topic: str) -> bool:
    """A publishable topic name: non-empty, no wildcards, no NUL, at most 65535 bytes."""
    return (
        bool(topic)
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        and len(topic.encode("utf-8", "surrogatepass")) <= _MAX_TOPIC_BYTES
    )


def valid_filter(pattern: str) -> bool:
    """A subscription filter: ``+`` fills a whole level, ``#`` only as the whole last level."""
    if not pattern or "\x00" in pattern:
        return False
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(pattern: str, topic: str) -> bool:
    """True if ``topic`` matches the filter ``pattern``.

    Wildcards at the first level do not match topics starting with ``$`` (MQTT 4.7.2),
    and ``a/#`` also matches the parent ``a``.
    """
    if topic.startswith("$") and pattern[:1] in ("+", "#"):
        return False
    p_levels = pattern.split("/")
    t_levels = topic.split("/")
    for i, p in enumerate(p_levels):
        if p == "#":
            return True
        if i >= len(t_levels):
            return False
        if p != "+" and p != t_levels[i]:
            return False
    return len(p_levels) == len(t_levels)


def overlap(a: str, b: str) -> bool:
    """True if some topic name matches both filters ``a`` and ``b``."""
    la, lb = a.split("/"), b.split("/")
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x == "#" or y == "#":
            # "a/#" also matches "a": a shorter filter ending here still overlaps.
            return True
        if x is None or y is None:
            return False
        if x != "+" and y != "+" and x != y:
            return False
    return True
