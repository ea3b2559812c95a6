"""The ``clickrouter`` command: a thin shell over the stages' library objects.

Each stage contributes its sub-commands from its own ``cli`` module through a
``register(subparsers)`` function; this module only dispatches and turns every
:class:`~clickrouter.errors.ClickrouterError` into a one-line message and exit
status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from clickrouter import __version__
from clickrouter.cliparser import Parser
from clickrouter.errors import ClickrouterError

# modules that define register(subparsers); each owns its sub-commands
COMMAND_MODULES = (
    "clickrouter.serving.cli",
    "clickrouter.demo.cli",
    "clickrouter.stream.cli",
    "clickrouter.serving.http.cli",
    "clickrouter.sim.cli",
    "clickrouter.training.cli",
    "clickrouter.replay.cli",
    "clickrouter.config_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="clickrouter",
        description="Real-time ad-campaign selection with thousands of per-campaign models.",
    )
    parser.add_argument("--version", action="version", version=f"clickrouter {__version__}")
    # every sub-command's parser is a Parser: its help shows defaults and settings
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ClickrouterError as exc:
        print(f"clickrouter {args.command}: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
