"""Every sub-command's ``--help`` documents every option, its default and the settings it reads."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clickrouter.cli import build_parser, main
from clickrouter.cli.config import SETTINGS_COMMANDS, _commands
from clickrouter.cli.parser import env_name
from clickrouter.config import Settings

PARSER = build_parser()
COMMANDS = dict(_commands(PARSER))
# settings no command reads; `config` lists them
UNREAD_SETTINGS: set[str] = set()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


def test_the_walk_finds_every_command() -> None:
    expected = {"serve", "score", "consume", "train", "models", "simulate", "demo", "config"}
    assert expected | {"models list", "models show", "models rollback"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help(command: str) -> None:
    bare = [a.option_strings or [a.dest] for a in options(COMMANDS[command]) if not a.help]
    assert not bare, f"clickrouter {command}: options without help: {bare}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_default_is_shown(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command.split(), "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the wrapping
    for action in options(COMMANDS[command]):
        if not action.option_strings or action.default in (None, False):
            continue
        entry = text.split(action.option_strings[0], 2)[-1][:400]  # its line in the list
        assert "default" in entry, f"clickrouter {command} {action.option_strings[0]}"


def test_every_setting_has_a_flag_or_is_listed_in_help() -> None:
    helps = {name: COMMANDS[name].format_help() for name in SETTINGS_COMMANDS}
    flags = {
        a.dest for name in SETTINGS_COMMANDS for a in options(COMMANDS[name]) if a.option_strings
    }
    missing = [
        field
        for field in Settings.__struct_fields__
        if field not in flags | UNREAD_SETTINGS
        and not any(env_name(field) in text for text in helps.values())
    ]
    assert not missing, f"settings neither a flag nor in any --help: {missing}"


def test_secrets_are_variables_never_flags() -> None:
    """A command line is readable by every local user (ps); a secret must not need one."""
    serve_help = " ".join(COMMANDS["serve"].format_help().split())
    for field in ("admin_token", "postback_secret", "click_secret"):
        assert field not in {a.dest for a in options(COMMANDS["serve"])}
        assert env_name(field) in serve_help


def test_a_flag_beats_its_variable_in_the_real_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve = ["serve", "--models", str(tmp_path / "nowhere")]
    monkeypatch.setenv("CLICKROUTER_POLICY", "bogus")
    assert main(serve) == 2
    assert "setting 'policy'" in capsys.readouterr().err
    assert main([*serve, "--policy", "greedy"]) == 2
    err = capsys.readouterr().err
    assert "policy" not in err and "nowhere" in err  # it got past the policy check


def test_a_bad_flag_value_names_option_and_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--models", "m", "--epsilon", "1.5"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "argument --epsilon" in err and "'1.5'" in err


def section(page: str, command: str) -> str:
    return page.split(f"### `clickrouter {command}`\n")[1].split("\n### ")[0]


def test_the_reference_page_lists_every_option() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "cli.md").read_text()
    missing = [
        f"{command} {action.option_strings[0]}"
        for command, parser in COMMANDS.items()
        for action in options(parser)
        if action.option_strings
        and f"### `clickrouter {command}`" in page
        and f"`{action.option_strings[0]}" not in section(page, command)
    ]
    absent = [c for c in COMMANDS if c != "models" and f"### `clickrouter {c}`" not in page]
    assert not missing and not absent, f"docs/reference/cli.md lacks {missing + absent}"
