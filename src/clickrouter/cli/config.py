"""``clickrouter config``: the effective settings, where each comes from, which flag sets it.

Secrets (a field whose name has a ``secret``, ``token`` or ``key`` part and is
not the path of a file) are shown as ``<redacted>`` when set: the output is
meant to be pasted into tickets and chat.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from clickrouter.cli.parser import env_name

REDACTED = "<redacted>"
# the commands whose flags override settings (other commands reuse a few names,
# e.g. demo --policy, for options of their own)
SETTINGS_COMMANDS = ("serve", "consume", "train")
_SECRET_PARTS = frozenset({"secret", "token", "key"})


def register(subparsers: Any) -> None:
    config = subparsers.add_parser(
        "config",
        help="print the effective settings (defaults, then CLICKROUTER_* variables)",
        description="Prints every setting: its value after CLICKROUTER_* variables are applied,"
        " where the value came from, and the command flags that override it. Secrets are"
        " redacted.",
    )
    config.add_argument(
        "--format",
        dest="output_format",
        choices=("table", "json"),
        default="table",
        help="table for a terminal, json for scripts",
    )
    config.set_defaults(handler=run_config)


def is_secret(field: str) -> bool:
    parts = field.split("_")
    return bool(_SECRET_PARTS.intersection(parts)) and parts[-1] != "file"


def effective_settings(
    env: dict[str, str] | None = None, flags: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """One row per setting: name, value (secrets redacted), source, variable, flags."""
    from clickrouter.config import Settings

    env = dict(os.environ) if env is None else env
    settings = Settings.from_env(env)  # a bad variable fails here, naming it
    rows = []
    for field in Settings.__struct_fields__:
        value = getattr(settings, field)
        if is_secret(field) and value is not None:
            value = REDACTED
        variable = env_name(field)
        rows.append(
            {
                "name": field,
                "value": value,
                "source": "env" if variable in env else "default",
                "env": variable,
                "flags": (flags or {}).get(field, []),
            }
        )
    return rows


def setting_flags(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """``{setting: ["serve --policy", ...]}`` for every flag whose dest names a setting."""
    from clickrouter.config import Settings

    found: dict[str, list[str]] = {}
    for command, sub in _commands(parser):
        if command not in SETTINGS_COMMANDS:
            continue
        for action in sub._actions:
            if action.dest in Settings.__struct_fields__ and action.option_strings:
                found.setdefault(action.dest, []).append(f"{command} {action.option_strings[0]}")
    return found


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                out.append((path, sub))
                out.extend(_commands(sub, path))
    return out


def run_config(args: argparse.Namespace) -> int:
    from clickrouter.cli import build_parser

    rows = effective_settings(flags=setting_flags(build_parser()))
    if args.output_format == "json":
        json.dump({row["name"]: row for row in rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="clickrouter settings")
    for column in ("setting", "value", "source", "variable", "flags"):
        table.add_column(column, overflow="fold")
    for row in rows:
        value = "unset" if row["value"] is None else str(row["value"])
        cells = (row["name"], value, row["source"], row["env"], ", ".join(row["flags"]))
        table.add_row(*(escape(cell) for cell in cells))  # a value is text, never markup
    Console().print(table)
    return 0
