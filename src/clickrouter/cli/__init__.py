"""The ``clickrouter`` command: a thin shell over the stages' library objects.

Each sub-command lives in its own module of this package (``serve``, ``train``,
...) and contributes itself through a ``register(subparsers)`` function; this
module only dispatches and turns every
:class:`~clickrouter.errors.ClickrouterError` into a one-line message and exit
status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from clickrouter import __version__
from clickrouter.cli.parser import Parser
from clickrouter.errors import ClickrouterError
from clickrouter.extras import extra_for_command

# modules that define register(subparsers); each owns its sub-commands
COMMAND_MODULES = (
    "clickrouter.cli.score",
    "clickrouter.cli.demo",
    "clickrouter.cli.consume",
    "clickrouter.cli.serve",
    "clickrouter.cli.simulate",
    "clickrouter.cli.train",
    "clickrouter.cli.replay",
    "clickrouter.cli.config",
    "clickrouter.cli.openapi",
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
    except ModuleNotFoundError as exc:
        # an optional package the command needs and the install lacks: name its extra
        missing = extra_for_command(args.command, exc)
        if missing is None:
            raise
        print(f"clickrouter {args.command}: error: {missing.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
