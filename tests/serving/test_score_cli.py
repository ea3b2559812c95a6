"""`clickrouter score`: one JSON line per request; errors name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clickrouter import ModelBank
from clickrouter.cli import main
from fakes import fitted_pipeline, random_profiles, write_model_directory


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return write_model_directory(tmp_path / "m", {"a": fitted_pipeline(0), "b": fitted_pipeline(1)})


def write_requests(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_scores_every_request_with_every_campaign(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = random_profiles(np.random.default_rng(0), 5)
    requests = write_requests(tmp_path / "r.jsonl", [json.dumps(p) for p in profiles])
    assert main(["score", "--models", str(models), "--requests", str(requests)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = ModelBank.from_directory(models).predict_proba(profiles)
    assert [list(r) for r in rows] == [["a", "b"]] * 5
    np.testing.assert_allclose([[r["a"], r["b"]] for r in rows], expected, atol=1e-15)


def test_top_k_keeps_the_best(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", ['{"country": "FR", "os": "ios"}'])
    assert main(["score", "--models", str(models), "--requests", str(requests), "--top", "1"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    full = ModelBank.from_directory(models).predict_proba([{"country": "FR", "os": "ios"}])[0]
    assert list(row.values()) == [pytest.approx(full.max())]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "r.jsonl:2: invalid JSON"),
        ("[1, 2]", "r.jsonl:2: expected a JSON object"),
        ('{"ts": "tomorrow"}', "r.jsonl:2: field 'ts'"),
    ],
)
def test_bad_lines_are_named(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", ['{"country": "FR"}', line])
    assert main(["score", "--models", str(models), "--requests", str(requests)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_inputs_are_clear_errors(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "--models", str(models), "--requests", str(tmp_path / "no.jsonl")]) == 2
    assert "no.jsonl: cannot read" in capsys.readouterr().err
    assert main(["score", "--models", str(tmp_path / "none"), "--requests", "-"]) == 2
    assert "not a model directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["score", "--models", str(models), "--requests", "-", "--top", "0"])


def test_offers_of_a_campaign_with_pages_are_named_by_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = [
        {
            "id": "a",
            "payout": 1.0,
            "landing_pages": [
                {"id": "fr", "url": "https://a.example/fr?k={click_id}"},
                {"id": "form", "url": "https://a.example/form?k={click_id}"},
            ],
        },
        {"id": "b", "landing_page": "https://b.example/?k={click_id}", "payout": 1.0},
    ]
    models = {"a": fitted_pipeline(0), "b": fitted_pipeline(1)}
    root = write_model_directory(tmp_path / "m", models, catalog)
    requests = write_requests(tmp_path / "r.jsonl", ['{"country": "FR", "os": "ios"}'])
    assert main(["score", "--models", str(root), "--requests", str(requests)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = ModelBank.from_directory(root).predict_proba([{"country": "FR", "os": "ios"}])[0]
    assert list(row) == ["a/fr", "a/form", "b"]
    np.testing.assert_allclose(list(row.values()), expected, atol=1e-15)
