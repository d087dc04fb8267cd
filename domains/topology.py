"""Simulated domains and the flows between them, loaded from ``domains/*.yaml``.

Each file describes one domain: its name, side (``high`` or ``low``), accreditation
(the highest classification it may hold), who it is (``country`` trigraph, ``group``
tetragraph, or ``public: true``), its topic layout, its broker users with a role each,
and the flows it is the source of. Access rules come from the roles and the layout,
never from hand-written ACLs:

- ``producer``: writes the inbound topic of every flow leaving the domain;
- ``guard``: reads those inbound topics, writes ``released`` for flows arriving here
  and the status topic;
- ``client``: reads and writes the domain's ``local`` topics, reads ``released`` for
  flows arriving here and the status topic.

Validation rejects any layout in which a client could write a topic that feeds the
guard or impersonate its output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from guard.domains.broker import Broker, BrokerUser
from guard.domains.topics import overlap, valid_filter
from guard.domains.transport import InProcessBroker

DEFAULT_DIR = Path(__file__).resolve().parent

#: Same scale as ``guard.markings.classification_rank``.
CLASSIFICATION_RANKS: Mapping[str, int] = {
    "UNCLASSIFIED": 0,
    "RESTRICTED": 1,
    "CONFIDENTIAL": 2,
    "SECRET": 3,
    "TOP SECRET": 4,
}
ROLES = ("producer", "guard", "client")
SIDES = ("high", "low")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TRIGRAPH = re.compile(r"^[A-Z]{3}$")
_TETRAGRAPH = re.compile(r"^[A-Z]{4}$")
_POLICY = re.compile(r"^[a-z0-9][a-z0-9-]*\.yaml$")

_DOMAIN_KEYS = {
    "name",
    "side",
    "accreditation",
    "country",
    "group",
    "public",
    "topics",
    "users",
    "flows",
}
_TOPIC_KEYS = {"inbound", "released", "status", "local"}
_USER_KEYS = {"name", "role"}
_FLOW_KEYS = {"name", "to", "policy"}


class TopologyError(ValueError):
    """One or more problems in the domain files, each naming the file and the key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class TopicLayout:
    """Topic templates of one domain; ``{flow}`` is replaced by a flow name."""

    inbound: str = "flows/{flow}/in"
    released: str = "released/{flow}"
    status: str = "guard/status"
    local: tuple[str, ...] = ("local/#",)

    def inbound_topic(self, flow: str) -> str:
        """The topic producers write and the guard reads for ``flow``."""
        return self.inbound.replace("{flow}", flow)

    def released_topic(self, flow: str) -> str:
        """The topic only the guard writes for ``flow`` on the destination domain."""
        return self.released.replace("{flow}", flow)


@dataclass(frozen=True)
class UserSpec:
    """A broker user as declared: its name and role."""

    name: str
    role: str


@dataclass(frozen=True)
class Flow:
    """Traffic from ``source`` to ``destination`` under the policy file ``policy``."""

    name: str
    source: str
    destination: str
    policy: str
    inbound_topic: str
    released_topic: str


@dataclass(frozen=True)
class Domain:
    """One simulated network as described by its YAML file."""

    name: str
    side: str
    accreditation: str
    country: str | None
    group: str | None
    public: bool
    topics: TopicLayout
    users: tuple[UserSpec, ...]
    path: Path | None = None
    declared_flows: tuple[dict[str, str], ...] = field(default=(), repr=False)

    @property
    def rank(self) -> int:
        """The accreditation on the 0 (UNCLASSIFIED) .. 4 (TOP SECRET) scale."""
        return CLASSIFICATION_RANKS[self.accreditation]

    @property
    def dest(self) -> str:
        """Release target code for markings checks: trigraph, tetragraph or ``PUBLIC``."""
        return self.country or self.group or "PUBLIC"


@dataclass(frozen=True)
class Topology:
    """All domains and flows; builds broker users and ACLs from them."""

    domains: Mapping[str, Domain]
    flows: tuple[Flow, ...]

    def flow(self, name: str) -> Flow:
        """The flow called ``name`` (KeyError if none)."""
        for f in self.flows:
            if f.name == name:
                return f
        raise KeyError(name)

    def flows_from(self, domain: str) -> list[Flow]:
        """Flows whose traffic enters the guard from ``domain``."""
        return [f for f in self.flows if f.source == domain]

    def flows_to(self, domain: str) -> list[Flow]:
        """Flows the guard releases into ``domain``."""
        return [f for f in self.flows if f.destination == domain]

    def acl(self, domain: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """``{user: (read filters, write filters)}`` derived from roles and layout."""
        d = self.domains[domain]
        out_in = [f.inbound_topic for f in self.flows_from(domain)]
        released = [f.released_topic for f in self.flows_to(domain)]
        result: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for u in d.users:
            if u.role == "producer":
                read, write = [], out_in
            elif u.role == "guard":
                read, write = out_in, [*released, d.topics.status]
            else:
                read = [*d.topics.local, *released, d.topics.status]
                write = list(d.topics.local)
            result[u.name] = (tuple(dict.fromkeys(read)), tuple(dict.fromkeys(write)))
        return result

    def broker_users(self, domain: str) -> list[BrokerUser]:
        """``BrokerUser`` objects (fresh random passwords) with the derived ACL."""
        return [
            BrokerUser(name, read=read, write=write)
            for name, (read, write) in self.acl(domain).items()
        ]

    def guard_feeding_topics(self, domain: str) -> list[str]:
        """Topics on ``domain`` whose content the guard reads."""
        return [f.inbound_topic for f in self.flows_from(domain)]

    def build_brokers(self, **broker_kwargs: Any) -> dict[str, Broker]:
        """One (not yet started) mosquitto ``Broker`` per domain."""
        return {
            name: Broker(name, self.broker_users(name), **broker_kwargs) for name in self.domains
        }

    def build_inprocess(self, **broker_kwargs: Any) -> dict[str, InProcessBroker]:
        """One ``InProcessBroker`` per domain, with the same users and ACL as mosquitto."""
        return {
            name: InProcessBroker(name, self.broker_users(name), **broker_kwargs)
            for name in self.domains
        }

    def missing_policies(self, policies_dir: Path) -> list[str]:
        """Policy files named by flows that do not exist under ``policies_dir``."""
        return [f.policy for f in self.flows if not (Path(policies_dir) / f.policy).is_file()]


# -- loading -----------------------------------------------------------------------


def _unknown(where: str, obj: Mapping[str, Any], allowed: set[str], problems: list[str]) -> None:
    for key in obj:
        if key not in allowed:
            problems.append(f"{where}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _template(where: str, value: Any, problems: list[str]) -> str | None:
    if not isinstance(value, str) or value.count("{flow}") != 1:
        problems.append(f"{where}: must be a string containing {{flow}} exactly once")
        return None
    if "+" in value or "#" in value or value.startswith("$"):
        problems.append(f"{where}: wildcards and '$' topics are not allowed")
        return None
    return value


def _parse_domain(path: Path, data: Any, problems: list[str]) -> Domain | None:
    p = f"{path}: "
    if not isinstance(data, dict):
        problems.append(f"{p}(top level): expected a mapping")
        return None
    start = len(problems)
    _unknown(p, data, _DOMAIN_KEYS, problems)
    for key in ("name", "side", "accreditation", "topics", "users"):
        if key not in data:
            problems.append(f"{p}{key}: missing")
    name = data.get("name")
    if "name" in data and not (isinstance(name, str) and _NAME.match(name)):
        problems.append(f"{p}name: {name!r} is not a lower-case name [a-z0-9-]")
    if path.suffix == ".yaml" and isinstance(name, str) and path.stem != name:
        problems.append(f"{p}name: {name!r} differs from the file name {path.stem!r}")
    side = data.get("side")
    if "side" in data and side not in SIDES:
        problems.append(f"{p}side: {side!r} not one of {', '.join(SIDES)}")
    acc = data.get("accreditation")
    if "accreditation" in data and acc not in CLASSIFICATION_RANKS:
        problems.append(f"{p}accreditation: {acc!r} not one of {', '.join(CLASSIFICATION_RANKS)}")

    country, group, public = data.get("country"), data.get("group"), data.get("public", False)
    if country is not None and not (isinstance(country, str) and _TRIGRAPH.match(country)):
        problems.append(f"{p}country: {country!r} is not an ISO 3166 trigraph")
    if group is not None and not (isinstance(group, str) and _TETRAGRAPH.match(group)):
        problems.append(f"{p}group: {group!r} is not a tetragraph")
    if not isinstance(public, bool):
        problems.append(f"{p}public: must be true or false")
    if sum(x not in (None, False) for x in (country, group, public)) != 1:
        problems.append(f"{p}country/group/public: exactly one of them must be given")
    if public is True and acc != "UNCLASSIFIED":
        problems.append(f"{p}accreditation: a public domain must be UNCLASSIFIED")

    topics = data.get("topics")
    layout = TopicLayout()
    if "topics" in data:
        if not isinstance(topics, dict):
            problems.append(f"{p}topics: expected a mapping")
        else:
            _unknown(f"{p}topics.", topics, _TOPIC_KEYS, problems)
            inbound = _template(f"{p}topics.inbound", topics.get("inbound"), problems)
            released = _template(f"{p}topics.released", topics.get("released"), problems)
            status = topics.get("status")
            if not (
                isinstance(status, str)
                and valid_filter(status)
                and "+" not in status
                and "#" not in status
                and not status.startswith("$")
            ):
                problems.append(f"{p}topics.status: must be a topic name without wildcards")
                status = None
            local = topics.get("local", [])
            if not isinstance(local, list) or not all(isinstance(t, str) for t in local):
                problems.append(f"{p}topics.local: expected a list of topic filters")
                local = []
            for i, t in enumerate(local):
                if not valid_filter(t) or t.startswith("$"):
                    problems.append(f"{p}topics.local[{i}]: {t!r} is not a valid topic filter")
            if inbound and released and status:
                layout = TopicLayout(inbound, released, status, tuple(local))
                _check_layout(p, layout, problems)

    users: list[UserSpec] = []
    raw_users = data.get("users")
    if "users" in data:
        if not isinstance(raw_users, list) or not raw_users:
            problems.append(f"{p}users: expected a non-empty list")
        else:
            seen: set[str] = set()
            for i, u in enumerate(raw_users):
                w = f"{p}users[{i}]"
                if not isinstance(u, dict):
                    problems.append(f"{w}: expected a mapping with name and role")
                    continue
                _unknown(f"{w}.", u, _USER_KEYS, problems)
                uname, role = u.get("name"), u.get("role")
                if not (isinstance(uname, str) and _USER.match(uname)):
                    problems.append(f"{w}.name: {uname!r} is not a valid user name")
                    continue
                if uname in seen:
                    problems.append(f"{w}.name: duplicate user {uname!r}")
                seen.add(uname)
                if role not in ROLES:
                    problems.append(f"{w}.role: {role!r} not one of {', '.join(ROLES)}")
                    continue
                users.append(UserSpec(uname, role))
            if "guard" not in {u.role for u in users}:
                problems.append(f"{p}users: no user with role guard")

    flows = data.get("flows", [])
    declared: list[dict[str, str]] = []
    if not isinstance(flows, list):
        problems.append(f"{p}flows: expected a list")
        flows = []
    for i, f in enumerate(flows):
        w = f"{p}flows[{i}]"
        if not isinstance(f, dict):
            problems.append(f"{w}: expected a mapping with name, to, policy")
            continue
        _unknown(f"{w}.", f, _FLOW_KEYS, problems)
        bad = False
        for key in sorted(_FLOW_KEYS):
            if not isinstance(f.get(key), str):
                problems.append(f"{w}.{key}: missing or not a string")
                bad = True
        if bad:
            continue
        if not _NAME.match(f["name"]):
            problems.append(f"{w}.name: {f['name']!r} is not a lower-case name [a-z0-9-]")
        if not _POLICY.match(f["policy"]):
            problems.append(f"{w}.policy: {f['policy']!r} is not a file name like name.yaml")
        declared.append({"name": f["name"], "to": f["to"], "policy": f["policy"], "key": w})

    if len(problems) > start:
        return None
    return Domain(
        name=name,
        side=side,
        accreditation=acc,
        country=country,
        group=group,
        public=public is True,
        topics=layout,
        users=tuple(users),
        path=path,
        declared_flows=tuple(declared),
    )


def _check_layout(p: str, layout: TopicLayout, problems: list[str]) -> None:
    """No client-writable topic may reach the guard's input, output or status."""
    guard_in = layout.inbound.replace("{flow}", "+")
    guard_out = layout.released.replace("{flow}", "+")
    if overlap(guard_in, guard_out):
        problems.append(f"{p}topics.released: overlaps topics.inbound")
    for name, t in (("inbound", guard_in), ("released", guard_out)):
        if overlap(t, layout.status):
            problems.append(f"{p}topics.status: overlaps topics.{name}")
    for i, t in enumerate(layout.local):
        for name, g in (("inbound", guard_in), ("released", guard_out), ("status", layout.status)):
            if overlap(t, g):
                problems.append(
                    f"{p}topics.local[{i}]: {t!r} overlaps topics.{name}: clients could write it"
                )


def load_topology(
    directory: Path | str = DEFAULT_DIR, *, policies_dir: Path | str | None = None
) -> Topology:
    """Load and validate every ``*.yaml`` domain file in ``directory``.

    Raises ``TopologyError`` listing every problem as ``file: key: reason``. With
    ``policies_dir`` the policy file of every flow must exist there.
    """
    directory = Path(directory)
    problems: list[str] = []
    domains: dict[str, Domain] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise TopologyError([f"{directory}: no *.yaml domain files"])
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{path}: (file): cannot read YAML: {exc}")
            continue
        d = _parse_domain(path, data, problems)
        if d is None:
            continue
        if d.name in domains:
            other = domains[d.name].path
            problems.append(f"{path}: name: domain {d.name!r} also defined in {other}")
            continue
        domains[d.name] = d

    flows: list[Flow] = []
    seen: dict[str, str] = {}
    for d in domains.values():
        for f in d.declared_flows:
            w = f["key"]  # "<file>: flows[i]"
            if f["name"] in seen:
                problems.append(f"{w}.name: flow {f['name']!r} also declared in {seen[f['name']]}")
                continue
            seen[f["name"]] = str(d.path)
            dest = domains.get(f["to"])
            if dest is None:
                problems.append(f"{w}.to: unknown domain {f['to']!r}")
                continue
            if dest.name == d.name:
                problems.append(f"{w}.to: a flow must leave its domain")
                continue
            flows.append(
                Flow(
                    name=f["name"],
                    source=d.name,
                    destination=dest.name,
                    policy=f["policy"],
                    inbound_topic=d.topics.inbound_topic(f["name"]),
                    released_topic=dest.topics.released_topic(f["name"]),
                )
            )
    topo = Topology(domains=domains, flows=tuple(flows))
    for d in domains.values():
        roles = {u.role for u in d.users}
        if "producer" in roles and not topo.flows_from(d.name):
            problems.append(f"{d.path}: users: role producer but {d.name} is the source of no flow")
    if policies_dir is not None:
        for f in flows:
            if not (Path(policies_dir) / f.policy).is_file():
                src = domains[f.source].path
                missing = Path(policies_dir) / f.policy
                problems.append(f"{src}: flows[{f.name}].policy: {missing} does not exist")
    if problems:
        raise TopologyError(problems)
    return topo
