"""The command line is wired: every command is discovered and answers --help."""

from __future__ import annotations

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
