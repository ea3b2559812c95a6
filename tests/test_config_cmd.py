"""``clickrouter config``: the effective settings, where each came from, secrets redacted."""

from __future__ import annotations

import json

import pytest

from clickrouter.cli import main
from clickrouter.cli.config import REDACTED, is_secret
from clickrouter.config import Settings

SECRETS = {
    "CLICKROUTER_ADMIN_TOKEN": "tok-3f9a1c55e0",
    "CLICKROUTER_POSTBACK_SECRET": "pb-77c2d0e41a",
    "CLICKROUTER_CLICK_SECRET": "ck-5be80a9d13",
}


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # the table keeps each value on one line


def run_config(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["config", *args]) == 0
    return capsys.readouterr().out


def test_json_shows_values_sources_and_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLICKROUTER_POLICY", "thompson")
    monkeypatch.setenv("CLICKROUTER_CLOCK_SKEW_SECONDS", "2m")
    monkeypatch.delenv("CLICKROUTER_PORT", raising=False)
    rows = json.loads(run_config(capsys, "--format", "json"))
    assert set(rows) == set(Settings.__struct_fields__)
    assert rows["policy"] | {"flags": None} == {
        "name": "policy", "value": "thompson", "source": "env", "env": "CLICKROUTER_POLICY",
        "flags": None,
    }  # fmt: skip
    assert rows["clock_skew_seconds"]["value"] == 120.0
    assert (rows["port"]["value"], rows["port"]["source"]) == (8000, "default")
    assert "serve --policy" in rows["policy"]["flags"]
    assert rows["attribution_window_seconds"]["flags"] == ["consume --window-seconds"]
    assert "demo --policy" not in rows["policy"]["flags"]  # the demo's own knob, not the setting


@pytest.mark.parametrize("output", ["table", "json"])
def test_secrets_never_appear(
    output: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLICKROUTER_MODEL_SIGNING_KEY_FILE", "/etc/clickrouter/signing.key")
    out = run_config(capsys, "--format", output)
    for value in SECRETS.values():
        assert value not in out
    assert REDACTED in out
    assert "/etc/clickrouter/signing.key" in out  # a path to a secret is not a secret


def test_which_fields_are_secret() -> None:
    secret = {f for f in Settings.__struct_fields__ if is_secret(f)}
    assert secret == {"admin_token", "postback_secret", "click_secret"}


def test_a_value_is_shown_as_text_not_markup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLICKROUTER_EVENTS_DIR", "[bold]/srv/ev[/bold]")
    assert "[bold]/srv/ev[/bold]" in run_config(capsys)


def test_a_bad_variable_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLICKROUTER_KEEP_ALIVE_SECONDS", "forever")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "CLICKROUTER_KEEP_ALIVE_SECONDS" in err and "'forever'" in err
