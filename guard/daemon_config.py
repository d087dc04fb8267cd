"""The daemon's configuration file (``guard run --config FILE``), YAML.

::

    topology: domains            # directory of domain files (default: the packaged domains/)
    policies: policies           # directory of the flows' policy files (default: ./policies)
    flows: all                   # or a list of flow names this guard carries
    brokers:                     # one entry per domain the carried flows touch
      us-secret: {host: 127.0.0.1, port: 1883, username: guard, password_file: pw/us-secret}
      gbr:       {host: 127.0.0.1, port: 1884, username: guard, password_file: pw/gbr}
    signing_key: keys            # key directory (signing.key inside) or PEM file, mode 0600
    state_dir: state             # worker-<i>/audit (the signed log) and worker-<i>/delivered.log
    client_id: guard             # MQTT client id prefix: worker i is "<client_id>-<i>"
    shared_group: guard          # workers share each flow as $share/<group>/<inbound topic>
    batch_max: 128               # messages decided together (Pipeline.decide_batch)
    max_batches_in_flight: 8     # batches waiting for audit commit / low-side PUBACK
    receive_maximum: 512         # MQTT 5 Receive Maximum: unacked messages the broker sends us
    session_expiry_s: 86400      # persistent session: queued QoS-1 messages survive restarts
    audit: {max_delay_s: 0.02, fsync: batch}
    reconnect: {initial_s: 0.1, max_s: 5.0}
    status_interval_s: 1.0       # health JSON on each domain's status topic (0: off)
    metrics: {host: 127.0.0.1, port: 0}   # Prometheus text; worker i on port + i; 0: off
    drain_timeout_s: 10          # SIGTERM: time to finish the batches in flight
    review_dir: null             # quarantined messages are queued here for human review
    latency_trace: null          # measurement: per-message stage times, a JSON line per batch

Relative paths are resolved against the directory of the configuration file. A
``password`` may be given inline instead of ``password_file`` (the file is better:
the configuration then holds no secret). Unknown keys are errors; every error names
``file: key: reason``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The configuration file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class BrokerEndpoint:
    """How to reach one domain's broker as the guard."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class DaemonConfig:
    """A validated configuration (see the module docstring for the file format)."""

    path: Path | None
    topology: Path | None
    policies: Path
    flows: tuple[str, ...] | None  # None: every flow of the topology
    brokers: Mapping[str, BrokerEndpoint]
    signing_key: Path
    state_dir: Path
    client_id: str = "guard"
    shared_group: str = "guard"
    batch_max: int = 128
    max_batches_in_flight: int = 8
    receive_maximum: int = 512
    session_expiry_s: int = 86400
    audit_max_delay_s: float = 0.02
    audit_fsync: str = "batch"
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0
    status_interval_s: float = 1.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    drain_timeout_s: float = 10.0
    review_dir: Path | None = None
    latency_trace: Path | None = None


_KEYS = {
    "topology", "policies", "flows", "brokers", "signing_key", "state_dir", "client_id",
    "shared_group", "batch_max", "max_batches_in_flight", "receive_maximum",
    "session_expiry_s", "audit", "reconnect", "status_interval_s", "metrics",
    "drain_timeout_s", "review_dir", "latency_trace",
}
_BROKER_KEYS = {"host", "port", "username", "password", "password_file"}


def _int(where: str, v: Any, lo: int, hi: int, problems: list[str]) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        problems.append(f"{where}: must be an integer in [{lo}, {hi}]")
        return None
    return v


def _float(where: str, v: Any, lo: float, hi: float, problems: list[str]) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or not lo <= v <= hi:
        problems.append(f"{where}: must be a number in [{lo}, {hi}]")
        return None
    return float(v)


def _ident(where: str, v: Any, problems: list[str]) -> str | None:
    if not isinstance(v, str) or not v or len(v) > 64 or \
            not all(c.isalnum() or c in "-_." for c in v):
        problems.append(f"{where}: must be 1-64 letters, digits, '-', '_' or '.'")
        return None
    return v


def parse_config(data: Any, *, base: Path, path: Path | None = None) -> DaemonConfig:
    """Validate a loaded YAML document; relative paths are taken from ``base``."""
    p = f"{path}: " if path else ""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"{p}(top level): expected a mapping"])
    for key in data:
        if key not in _KEYS:
            problems.append(f"{p}{key}: unknown key (allowed: {', '.join(sorted(_KEYS))})")

    def path_of(key: str, default: str | None) -> Path | None:
        v = data.get(key, default)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            problems.append(f"{p}{key}: must be a path")
            return None
        return (base / v).resolve()

    topology = path_of("topology", None)
    policies = path_of("policies", "policies")
    signing_key = path_of("signing_key", None)
    state_dir = path_of("state_dir", None)
    review_dir = path_of("review_dir", None)
    latency_trace = path_of("latency_trace", None)
    for key, value in (("signing_key", signing_key), ("state_dir", state_dir)):
        if value is None and key not in data:
            problems.append(f"{p}{key}: missing")

    flows = data.get("flows", "all")
    flow_names: tuple[str, ...] | None = None
    if flows != "all":
        if not isinstance(flows, list) or not flows or not all(isinstance(f, str) for f in flows):
            problems.append(f"{p}flows: must be 'all' or a non-empty list of flow names")
        else:
            flow_names = tuple(flows)

    brokers: dict[str, BrokerEndpoint] = {}
    raw = data.get("brokers")
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{p}brokers: must map each domain name to {{host, port, username, "
                        "password_file}")
        raw = {}
    for name, b in raw.items():
        w = f"{p}brokers.{name}"
        if not isinstance(b, dict):
            problems.append(f"{w}: expected a mapping")
            continue
        for key in b:
            if key not in _BROKER_KEYS:
                problems.append(f"{w}.{key}: unknown key")
        host = b.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host:
            problems.append(f"{w}.host: must be a host name")
        port = _int(f"{w}.port", b.get("port"), 1, 65535, problems)
        user = b.get("username", "guard")
        if not isinstance(user, str) or not user:
            problems.append(f"{w}.username: must be a string")
        password = b.get("password")
        if "password_file" in b:
            if password is not None:
                problems.append(f"{w}: give password or password_file, not both")
            try:
                password = (base / str(b["password_file"])).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{w}.password_file: cannot read: {exc.strerror}")
                password = None
        if not isinstance(password, str) or not password:
            problems.append(f"{w}: password or password_file is required")
            continue
        if port is not None and isinstance(host, str) and isinstance(user, str):
            brokers[str(name)] = BrokerEndpoint(host, port, user, password)

    def sub(key: str) -> dict[str, Any]:
        v = data.get(key, {})
        if not isinstance(v, dict):
            problems.append(f"{p}{key}: expected a mapping")
            return {}
        return v

    audit, reconnect, metrics = sub("audit"), sub("reconnect"), sub("metrics")
    for name, m, allowed in (("audit", audit, {"max_delay_s", "fsync"}),
                             ("reconnect", reconnect, {"initial_s", "max_s"}),
                             ("metrics", metrics, {"host", "port"})):
        for key in m:
            if key not in allowed:
                problems.append(f"{p}{name}.{key}: unknown key")
    fsync = audit.get("fsync", "batch")
    if fsync not in ("always", "batch", "none"):
        problems.append(f"{p}audit.fsync: must be always, batch or none")
    kw: dict[str, Any] = {
        "client_id": _ident(f"{p}client_id", data.get("client_id", "guard"), problems),
        "shared_group": _ident(f"{p}shared_group", data.get("shared_group", "guard"), problems),
        "batch_max": _int(f"{p}batch_max", data.get("batch_max", 128), 1, 4096, problems),
        "max_batches_in_flight": _int(f"{p}max_batches_in_flight",
                                      data.get("max_batches_in_flight", 8), 1, 256, problems),
        "receive_maximum": _int(f"{p}receive_maximum", data.get("receive_maximum", 512), 1,
                                65535, problems),
        "session_expiry_s": _int(f"{p}session_expiry_s", data.get("session_expiry_s", 86400), 0,
                                 2**32 - 1, problems),
        "audit_max_delay_s": _float(f"{p}audit.max_delay_s", audit.get("max_delay_s", 0.02),
                                    0.001, 10.0, problems),
        "audit_fsync": fsync,
        "reconnect_initial_s": _float(f"{p}reconnect.initial_s", reconnect.get("initial_s", 0.1),
                                      0.001, 60.0, problems),
        "reconnect_max_s": _float(f"{p}reconnect.max_s", reconnect.get("max_s", 5.0), 0.01,
                                  600.0, problems),
        "status_interval_s": _float(f"{p}status_interval_s", data.get("status_interval_s", 1.0),
                                    0.0, 3600.0, problems),
        "metrics_host": metrics.get("host", "127.0.0.1"),
        "metrics_port": _int(f"{p}metrics.port", metrics.get("port", 0), 0, 65535, problems),
        "drain_timeout_s": _float(f"{p}drain_timeout_s", data.get("drain_timeout_s", 10.0), 0.0,
                                  3600.0, problems),
    }
    if not isinstance(kw["metrics_host"], str):
        problems.append(f"{p}metrics.host: must be a host name")
    if problems:
        raise ConfigError(problems)
    assert policies is not None and signing_key is not None and state_dir is not None
    return DaemonConfig(path=path, topology=topology, policies=policies, flows=flow_names,
                        brokers=brokers, signing_key=signing_key, state_dir=state_dir,
                        review_dir=review_dir, latency_trace=latency_trace, **kw)


def load_config(path: str | Path) -> DaemonConfig:
    """Read and validate a configuration file; ``ConfigError`` lists every problem."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"{p}: cannot read YAML: {exc}"]) from None
    return parse_config(data, base=p.resolve().parent, path=p)
