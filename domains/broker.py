"""A mosquitto broker owned by the project: free port, generated configuration, ACL.

Every simulated domain runs its own broker. The configuration is generated so that
nobody connects anonymously, each client authenticates as a named user, and an ACL
says which topics each user may read and write: a low-side client cannot publish
into the topics that feed the guard.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Mosquitto 2.x password hash "$7$": PBKDF2-HMAC-SHA512, 101 iterations by default
# there; we use more because the file is generated once per broker start.
_PBKDF2_ITERATIONS = 1000


class BrokerError(RuntimeError):
    """The broker binary is missing, would not start, or died."""


@dataclass(frozen=True)
class BrokerUser:
    """One authenticated identity with the topic filters it may read and write."""

    name: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def password_line(user: str, password: str) -> str:
    """One mosquitto ``password_file`` line in the ``$7$`` (PBKDF2-SHA512) format."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    return (
        f"{user}:$7${_PBKDF2_ITERATIONS}$"
        f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )


def acl_text(users: Sequence[BrokerUser]) -> str:
    """The ``acl_file`` granting each user exactly its read and write filters."""
    lines: list[str] = []
    for user in users:
        lines.append(f"user {user.name}")
        both = set(user.read) & set(user.write)
        lines += [f"topic readwrite {t}" for t in sorted(both)]
        lines += [f"topic read {t}" for t in sorted(set(user.read) - both)]
        lines += [f"topic write {t}" for t in sorted(set(user.write) - both)]
        lines.append("")
    return "\n".join(lines)


def _hand_to_broker_user(directory: Path) -> None:
    """Started as root, mosquitto drops to the ``mosquitto`` user: let it use its files."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in [directory, *directory.iterdir()]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


class Broker:
    """A mosquitto process on 127.0.0.1 with its own directory, users and ACL.

    Use as a context manager. ``restart()`` stops and starts the same broker on the
    same port with the same persistence file, as a crashed-and-restarted broker would.
    """

    def __init__(
        self,
        name: str,
        users: Sequence[BrokerUser],
        *,
        port: int | None = None,
        directory: Path | None = None,
        persistence: bool = True,
        max_packet_bytes: int = 16 * 1024 * 1024,
        max_queued_messages: int = 100_000,
        extra_config: str = "",
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.name = name
        self.users = {u.name: u for u in users}
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix=f"guard-{name}-"))
        self.persistence = persistence
        self.max_packet_bytes = max_packet_bytes
        self.max_queued_messages = max_queued_messages
        # Appended verbatim to the generated file, e.g. a bridge ``connection`` block.
        self.extra_config = extra_config
        self._proc: subprocess.Popen[bytes] | None = None

    # -- configuration -------------------------------------------------------------
    def config_text(self) -> str:
        """The generated ``mosquitto.conf``."""
        d = self.directory
        return "\n".join(
            [
                f"listener {self.port} {self.host}",
                "allow_anonymous false",
                f"password_file {d / 'passwd'}",
                f"acl_file {d / 'acl'}",
                f"persistence {'true' if self.persistence else 'false'}",
                f"persistence_location {d}/",
                "autosave_interval 1",
                f"max_packet_size {self.max_packet_bytes}",
                f"max_queued_messages {self.max_queued_messages}",
                "max_inflight_messages 1000",
                f"log_dest file {d / 'mosquitto.log'}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "",
                self.extra_config,
            ]
        )

    def _write_config(self) -> Path:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        passwd = d / "passwd"
        passwd.write_text(
            "\n".join(password_line(u.name, u.password) for u in self.users.values()) + "\n"
        )
        passwd.chmod(0o600)  # holds password hashes
        (d / "acl").write_text(acl_text(list(self.users.values())))
        conf = d / "mosquitto.conf"
        conf.write_text(self.config_text())
        _hand_to_broker_user(d)
        return conf

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> Broker:
        """Start mosquitto and wait until it accepts TCP connections."""
        if self.running:
            return self
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise BrokerError(f"mosquitto {self.name} exited at start: {err.strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto {self.name} did not listen on port {self.port}")

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, *, kill: bool = False, timeout_s: float = 5.0) -> None:
        """Stop the broker: SIGTERM (it saves persistence), or SIGKILL with ``kill``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stderr:
                proc.stderr.close()

    def restart(self, *, kill: bool = False) -> Broker:
        """Stop and start again on the same port, keeping the persistence file."""
        self.stop(kill=kill)
        return self.start()

    def credentials(self, user: str) -> tuple[str, str]:
        """``(username, password)`` of a configured user."""
        u = self.users[user]
        return u.name, u.password

    def close(self) -> None:
        """Stop the broker and remove its directory if the broker created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
