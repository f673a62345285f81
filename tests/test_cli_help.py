"""`appliance --help` and `appliance-receiver --help`, and every command's --help under them: each
command has a one-line description in its parent's list, every argument says what it is, and
every option with a default shows it."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from appliance.cli import build_parser, main
from receiver import cli as receiver_cli

Main = Callable[[Sequence[str]], int]
PROGRAMS: dict[str, tuple[Main, argparse.ArgumentParser]] = {
    "appliance": (main, build_parser()),
    "appliance-receiver": (receiver_cli.main, receiver_cli.build_parser()),
}
SUMMARY_CHARS = 72
"""A command's line in its parent's list fits one line of a 100-column terminal after the name."""


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


EVERY_COMMAND = [
    (program, path) for program, (_, parser) in PROGRAMS.items() for path, _ in commands(parser)
]


def shown_default(action: argparse.Action) -> re.Pattern[str] | None:
    """What the help must show for the default, "(default: VALUE" then ")", "," or ";"; None
    when there is nothing to show (no default, a flag, an empty repeatable option)."""
    if action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
        return None
    return re.compile(rf"\(default: {re.escape(str(action.default))}[),;]")


def help_text(program: str, path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    run, _ = PROGRAMS[program]
    with pytest.raises(SystemExit) as exit_:
        run([*path, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("program", "path"), EVERY_COMMAND, ids=[" ".join((p, *path)) for p, path in EVERY_COMMAND]
)
def test_every_command_lists_its_commands_and_shows_its_defaults(
    program: str,
    path: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    parser = dict(commands(PROGRAMS[program][1]))[path]
    out = help_text(program, path, capsys)
    flat = " ".join(out.split())

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                summary = choice.help or ""
                assert summary, f"{program} {' '.join(path)}: {choice.dest} has no description"
                assert len(summary) <= SUMMARY_CHARS and "\n" not in summary, summary
                listed = rf"^\s+{re.escape(choice.dest)}\s+{re.escape(summary)}$"
                assert re.search(listed, out, re.MULTILINE), f"{choice.dest} not on one line"
        elif not isinstance(action, argparse._HelpAction):
            assert action.help, f"{program} {' '.join(path)}: {action.dest} has no help"
            default = shown_default(action)
            assert default is None or default.search(flat), f"{action.dest}: default not shown"


def test_a_missing_default_is_caught() -> None:
    """The check above would see an option whose help forgets its default."""
    parser = argparse.ArgumentParser()
    forgot = parser.add_argument("--epochs", type=int, default=60, help="epochs (default: 6)")
    shown = shown_default(forgot)
    assert shown is not None and not shown.search(" ".join(parser.format_help().split()))
    assert shown.search("epochs (default: 60)") and shown.search("(default: 60, measured)")


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_installed_command_lists_every_command(program: str) -> None:
    script = Path(sys.executable).parent / program
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    parser = PROGRAMS[program][1]
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in top.choices:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", result.stdout, re.MULTILINE), name
