"""One way in from Python: ``ModelBank.open`` takes what ``serve --models`` takes.

A model directory, a model store (its CURRENT version) or one store version;
the examples of docs/reference/python.md run here against a real store.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clickrouter import ModelBank
from clickrouter.cli import main
from clickrouter.errors import InvalidInput, NotFound
from clickrouter.modelstore import ModelStore, write_manifest
from fakes import fitted_pipeline, random_profiles, write_model_directory

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference" / "python.md"
PROFILES = random_profiles(np.random.default_rng(7), 6)


def publish(store: ModelStore, seed: int) -> str:
    with store.staging() as (version, stage):
        write_model_directory(stage, {"a": fitted_pipeline(seed), "b": fitted_pipeline(seed + 1)})
        write_manifest(stage, {"version": version})
    return version


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store with two versions of different models; the second is live."""
    store = ModelStore(tmp_path / "store")
    versions = [publish(store, 0), publish(store, 10)]
    store.set_current(versions[1])
    return store.root, versions


def scores(bank: ModelBank) -> np.ndarray:
    with bank:
        return np.asarray(bank.predict_proba(PROFILES))


def test_a_store_serves_current_or_the_version_asked(store: tuple[Path, list[str]]) -> None:
    root, (old, live) = store
    from_dir = {v: scores(ModelBank.from_directory(root / "versions" / v)) for v in (old, live)}
    assert not np.allclose(from_dir[old], from_dir[live])  # the versions differ
    np.testing.assert_array_equal(scores(ModelBank.open(root)), from_dir[live])
    np.testing.assert_array_equal(scores(ModelBank.open(root, version=old)), from_dir[old])
    np.testing.assert_array_equal(scores(ModelBank.open(root / "versions" / old)), from_dir[old])
    # the call users tried first: from_directory on a store root, no longer an error
    np.testing.assert_array_equal(scores(ModelBank.from_directory(root)), from_dir[live])
    ModelStore(root).set_current(old)  # a rollback is what the next open serves
    np.testing.assert_array_equal(scores(ModelBank.open(root)), from_dir[old])


def test_a_plain_directory_opens_as_before(tmp_path: Path) -> None:
    models = write_model_directory(tmp_path / "m", {"a": fitted_pipeline(3)})
    with ModelBank.open(models) as bank:
        assert bank.campaign_ids == ["a"]


def test_what_cannot_be_opened_says_why(store: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = store
    empty = ModelStore(tmp_path / "empty")
    publish(empty, 0)  # published, never made live
    with pytest.raises(NotFound, match="no CURRENT version"):
        ModelBank.open(empty.root)
    with pytest.raises(NotFound, match="no version 'v0'"):
        ModelBank.open(root, version="v0")
    with pytest.raises(InvalidInput, match="not a model store"):
        ModelBank.open(root / "versions" / ModelStore(root).versions()[0], version="v1")


@pytest.mark.parametrize("version", ["../../outside", "/etc", ".hidden", "a/b", "x" * 200])
def test_a_version_name_cannot_leave_the_store(
    store: tuple[Path, list[str]], tmp_path: Path, version: str
) -> None:
    """A version that would resolve outside versions/ is refused before any file is read."""
    root, (_, live) = store
    shutil.copytree(root / "versions" / live, tmp_path / "outside")  # a loadable decoy
    with pytest.raises(InvalidInput, match="invalid model version name"):
        ModelBank.open(root, version=version)


def test_score_cli_takes_a_store(
    store: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, (_, live) = store
    requests = tmp_path / "r.jsonl"
    requests.write_text("".join(json.dumps(p) + "\n" for p in PROFILES), encoding="utf-8")
    assert main(["score", "--models", str(root), "--requests", str(requests)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = scores(ModelBank.from_directory(root / "versions" / live))
    np.testing.assert_allclose([[r["a"], r["b"]] for r in rows], expected, atol=1e-15)


def doc_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)


def test_the_python_reference_examples_run(
    store: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Each example, in order and in one namespace, in a directory holding ``store/``
    (the fixture's) and ``models/`` (a copy of its live version), as the page says."""
    root, (_, live) = store
    shutil.copytree(root / "versions" / live, root.parent / "models")
    monkeypatch.chdir(root.parent)
    examples = doc_examples()
    assert len(examples) >= 3
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    for number, code in enumerate(examples, start=1):
        exec(compile(code, f"{DOCS.name} example {number}", "exec"), namespace)
    assert capsys.readouterr().out.strip()  # the examples print what they show
