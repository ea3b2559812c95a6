"""The argument parser every ``clickrouter`` command is built with.

Its help shows each option's default, and for an option that overrides a
setting (its ``dest`` names a :class:`~clickrouter.config.Settings` field) the
setting's default and its ``CLICKROUTER_*`` variable, taken from
:class:`Settings` itself so the help cannot drift from the code.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from clickrouter.config import ENV_PREFIX, Settings
from clickrouter.durations import format_duration
from clickrouter.errors import InvalidInput
from clickrouter.logs import LOG_FORMATS


class HelpFormatter(argparse.HelpFormatter):
    """Help lines end with ``(default: X)``; a text with line breaks keeps them (epilogs)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        if _is_duration(action):
            return "DURATION"
        return super()._get_default_metavar_for_optional(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "default" in text.lower():
            return text
        if action.dest in Settings.__struct_fields__ and action.default is None:
            return f"{text} (default: {setting_default(action.dest)}; env {env_name(action.dest)})"
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return text
        return f"{text} (default: {_shown(action, default).replace('%', '%%')})"


def _is_duration(action: argparse.Action) -> bool:
    return getattr(action.type, "__name__", "") == "duration"


def _shown(action: argparse.Action, value: Any) -> str:
    if _is_duration(action) and isinstance(value, int | float):
        return format_duration(float(value))
    return str(value)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def setting_default(field: str) -> str:
    value = Settings.__struct_defaults__[Settings.__struct_fields__.index(field)]
    if value is None:
        return "unset"
    if field.endswith("_seconds") and isinstance(value, int | float):
        return format_duration(float(value))
    return str(value)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` using :class:`HelpFormatter` unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_log_format(parser: argparse.ArgumentParser) -> None:
    """``--log-format text|json`` (setting ``log_format``) for a long-running command."""
    parser.add_argument(
        "--log-format",
        dest="log_format",
        choices=LOG_FORMATS,
        default=None,
        help="log lines on stderr: text, or json (one object per line with ts, level,"
        " logger, message, stage, version, pid, host)",
    )


def settings_epilog(fields: dict[str, str]) -> str:
    """Help text listing settings a command reads that have no flag (secrets)."""
    lines = ["settings read only from the environment (no flag: a flag would show in ps):"]
    for field, meaning in fields.items():
        lines.append(f"  {env_name(field):34} {meaning}")
    return "\n".join(lines)


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags whose dest names a Settings field (None: not given on the command line)."""
    return {k: v for k, v in vars(args).items() if k in Settings.__struct_fields__}


def bounded_int(low: int, high: int) -> Any:
    """An argparse ``type``: an integer in ``low..high``, else a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low}..{high}, got {text!r}")
        return value

    return parse


def bounded_float(low: float, high: float) -> Any:
    """An argparse ``type``: a finite number in ``low..high``, else a message naming it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"expected {low:g}..{high:g}, got {text!r}")
        return value

    return parse


def global_c_option(text: str) -> float | None:
    """``--global-c``: a number in 1e-9..1e9, or ``auto`` (None: chosen per group)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(bounded_float(1e-9, 1e9)(text))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or auto") from None


COLD_AT_PRIOR_HELP = (
    "a campaign no click has reached yet scores the trainer's prior mean (the pooled rate"
    " a base-rate model of it would shrink to), updated as it moves, instead of keeping"
    " the cold start's rate (default: off)"
)
GLOBAL_C_HELP = (
    "with --learner hierarchical: inverse L2 strength of the shared effects, or auto:"
    " chosen per group by how well effects fitted on some campaigns predict the others,"
    " none when no value predicts them better than no sharing (default auto)"
)


def add_learner_options(add: Any, learner: str, posterior: bool) -> None:
    """The trainer's learner options of ``demo`` and ``replay`` (``add``: a parser's or
    group's ``add_argument``), with these defaults."""
    add(
        "--learner",
        choices=("independent", "hierarchical"),
        default=learner,
        help="hierarchical: campaign models pulled towards effects their vertical shares"
        " (default %(default)s)",
    )
    add("--global-c", type=global_c_option, default=None, metavar="GLOBAL_C", help=GLOBAL_C_HELP)
    add(
        "--hierarchy-min-positives",
        type=bounded_int(1, 10**6),
        help="with --learner hierarchical: sales a campaign needs for a model pulled towards"
        " the shared effects, at most --min-positives (default: --min-positives)",
    )
    add(
        "--posterior",
        action=argparse.BooleanOptionalAction,
        default=posterior,
        help="publish each logistic model's Laplace posterior (on with laplace-thompson)",
    )


def add_page_schedule(add: Any, note: str) -> None:
    """``--page-launch-share`` and ``--page-retire-share`` of a generated world (default 0:
    every page follows its catalogue flag); ``note`` ends each help text."""
    for name, what in (("launch", "go live"), ("retire", "are retired")):
        add(
            f"--page-{name}-share",
            type=bounded_float(0, 1),
            default=0.0,
            help=f"share of the extra pages that {what} at a whole day of the first week{note}",
        )


def check_page_schedule(args: argparse.Namespace) -> None:
    """--page-launch-share and --page-retire-share split one world's extra pages."""
    total = args.page_launch_share + args.page_retire_share
    if total > 1:
        raise InvalidInput(
            f"--page-launch-share {args.page_launch_share:g} plus --page-retire-share"
            f" {args.page_retire_share:g} is {total:g}: the two share the extra pages, at most 1"
        )
