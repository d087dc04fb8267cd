"""The command line is wired: every command is discovered and answers --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from guard.cli import build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("guard ")


def test_bench_is_registered() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert "bench" in actions[0].choices


def test_bench_names_are_listed_without_importing_them() -> None:
    from guard.cli.bench import benchmark_names

    assert {"core", "markings", "decide", "sign"} <= set(benchmark_names())
    # In a fresh interpreter: building the whole CLI imports no benchmark module.
    probe = (
        "import sys; from guard.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('guard.bench.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_arguments_are_refused_outside_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["markings", "check", "--no-such-flag", "SECRET"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_bench_passes_its_arguments_to_the_module(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "markings", "--help"])
    assert exc.value.code == 0
    assert "usage: guard bench markings" in capsys.readouterr().out
