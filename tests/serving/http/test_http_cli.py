"""`clickrouter serve` refuses bad arguments and settings with exit 2 and a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickrouter.cli import main


def test_missing_model_directory_is_exit_2(tmp_path: Path, capsys):
    assert main(["serve", "--models", str(tmp_path / "nowhere")]) == 2
    assert "no campaigns.json" in capsys.readouterr().err


def test_bad_policy_setting_is_exit_2(sample_models: Path, capsys, monkeypatch):
    monkeypatch.setenv("CLICKROUTER_POLICY", "softmax")
    assert main(["serve", "--models", str(sample_models), "--workers", "2"]) == 2
    assert "'policy'" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--workers", "0"), ("--port", "70000")])
def test_bad_numbers_are_refused_by_argparse(sample_models: Path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--models", str(sample_models), flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err
