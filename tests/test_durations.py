"""One duration syntax for every option and ``*_seconds`` setting; bad values name themselves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickrouter.cli import build_parser, main
from clickrouter.cli.demo import config_from_args
from clickrouter.config import Settings
from clickrouter.durations import MAX_SECONDS, format_duration, parse_duration
from clickrouter.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("2.5", 2.5), ("30s", 30), ("5m", 300), ("3h", 10800), ("7d", 604800),
     (" 1.5 h ", 5400), (".5s", 0.5)],
)  # fmt: skip
def test_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_plain_number_is_in_the_options_unit() -> None:
    assert parse_duration("2", unit=86400) == 2 * 86400  # --retention-days 2
    assert parse_duration("2h", unit=86400) == 7200  # a unit overrides it


@pytest.mark.parametrize(
    "text", ["", "5x", "-5", "5 m s", "nan", "inf", "1e3", "5mm", "m", "0x10", "5\n6", "9" * 400]
)
def test_malformed_values_are_refused_naming_the_value(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text, what="--every")
    assert caught.value.message.startswith("--every: ") and repr(text)[:20] in caught.value.message


def test_zero_only_where_allowed_and_spans_are_bounded() -> None:
    with pytest.raises(InvalidInput, match="> 0"):
        parse_duration("0s")
    assert parse_duration("0", allow_zero=True) == 0
    with pytest.raises(InvalidInput, match="longer than"):
        parse_duration(f"{MAX_SECONDS / 86400 + 1:.0f}d")


@given(st.floats(min_value=0.001, max_value=MAX_SECONDS / 86400, allow_nan=False))
def test_format_then_parse_is_the_identity_on_its_outputs(days: float) -> None:
    seconds = round(days * 86400, 3)
    assert math.isclose(parse_duration(format_duration(seconds)), seconds, rel_tol=1e-5)


def test_settings_variables_take_the_same_syntax() -> None:
    env = {"CLICKROUTER_ATTRIBUTION_WINDOW_SECONDS": "7d", "CLICKROUTER_CLOCK_SKEW_SECONDS": "90"}
    settings = Settings.from_env(env)
    assert (settings.attribution_window_seconds, settings.clock_skew_seconds) == (604800, 90)
    with pytest.raises(InvalidInput, match=r"CLICKROUTER_KEEP_ALIVE_SECONDS: .*'soon'"):
        Settings.from_env({"CLICKROUTER_KEEP_ALIVE_SECONDS": "soon"})


@pytest.mark.parametrize(
    "argv",
    [
        ["consume", "--source", "ev", "--data", "d", "--commit-seconds", "5x"],
        ["consume", "--source", "ev", "--data", "d", "--retention-days", "-1"],
        ["train", "--store", "s", "--every", "soon"],
        ["serve", "--models", "m", "--keep-alive", "0"],
        ["simulate", "--drain-seconds", "2h"],  # beyond its 3600 s bound
        ["demo", "--minutes", "1x"],
    ],
)
def test_a_bad_duration_option_exits_2_naming_option_and_value(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    err = capsys.readouterr().err
    option, value = argv[-2], argv[-1]
    assert caught.value.code == 2
    assert f"argument {option}" in err and repr(value) in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_plain_numbers_keep_each_options_unit() -> None:
    """Existing scripts keep their meaning: days for --retention-days, minutes for demo."""
    parser = build_parser()
    consume = ["consume", "--source", "ev", "--data", "d"]
    assert parser.parse_args([*consume, "--retention-days", "30"]).retention_days == 30 * 86400
    assert parser.parse_args([*consume, "--retention-days", "12h"]).retention_days == 43200
    assert parser.parse_args([*consume, "--window-seconds", "90"]).attribution_window_seconds == 90
    assert config_from_args(parser.parse_args(["demo", "--minutes", "90s"])).minutes == 1.5
    assert config_from_args(parser.parse_args(["demo", "--retrain-hours", "2"])).retrain_hours == 2
