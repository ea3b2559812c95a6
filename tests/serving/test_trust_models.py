"""Nothing unpickles a model file unless its source is trusted; skops builds listed types only.

Every attack is done for real: a pickle whose ``__reduce__`` writes a marker
file is put where someone else could have written it (a group- or
world-writable directory, a file of another uid, a store whose root others may
write), then loaded; the marker must not exist. The same bytes load with the
operator switch or a correctly signed manifest, and a wrong signature refuses
the whole version. The tests run as root in CI: root owns everything, so the
mode bits must decide.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from clickrouter import ModelBank
from clickrouter.errors import InvalidInput, ModelLoadError
from clickrouter.modelstore import ModelStore
from clickrouter.modelstore.signing import SIGNATURE, read_key_file, sign_manifest
from clickrouter.profile import profile_frame
from clickrouter.serving.directory import read_directory
from clickrouter.serving.loading import ModelFileError, load_model
from clickrouter.serving.trust import ModelTrust
from clickrouter.training.publish import Placement, publish
from fakes import fitted_pipeline, random_profiles, sklearn_proba, write_model_directory

NOBODY = 65534
KEY = b"k" * 32
OTHER_KEY = b"o" * 32


class Payload:
    """Unpickling it writes ``marker``: what any code an attacker chose could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


def evil_directory(root: Path, marker: Path) -> Path:
    """A model directory whose campaign ``a`` is the payload (and ``b`` a real model)."""
    write_model_directory(root, {"a": fitted_pipeline(0), "b": fitted_pipeline(1)})
    (root / "a.joblib").write_bytes(pickle.dumps(Payload(marker)))
    return root


def refusals(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(ModelLoadError) as info:
        ModelBank.from_directory(path, **kwargs)
    return info.value.problems


def test_own_directory_of_own_files_loads_as_before(tmp_path: Path) -> None:
    model = fitted_pipeline(3)
    root = write_model_directory(tmp_path / "models", {"a": model})
    with ModelBank.from_directory(root) as bank:
        profiles = random_profiles(np.random.default_rng(0), 10)
        np.testing.assert_allclose(
            bank.predict_proba(profiles)[:, 0], sklearn_proba(model, bank.canonical(profiles))
        )


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_pickle_in_a_directory_others_may_write_is_not_unpickled(
    tmp_path: Path, marker: Path, mode: int
) -> None:
    root = evil_directory(tmp_path / "models", marker)
    os.chmod(root, mode)
    problems = refusals(root)
    assert not marker.exists()
    assert any(
        "a.joblib: refusing to unpickle" in p and "writable by" in p and "--trust-models" in p
        for p in problems
    )
    assert any("b.joblib: refusing to unpickle" in p for p in problems)  # same source


def test_a_pickle_owned_by_another_uid_is_not_unpickled(tmp_path: Path, marker: Path) -> None:
    root = evil_directory(tmp_path / "models", marker)
    os.chown(root / "a.joblib", NOBODY, NOBODY)
    with ModelBank.from_directory(root, strict=False) as bank:
        assert bank.campaign_ids == ["b"]  # b is still ours: only a is refused
        assert f"owned by uid {NOBODY}" in bank.skipped[0]
    assert not marker.exists()


def test_a_group_writable_pickle_is_not_unpickled(tmp_path: Path, marker: Path) -> None:
    root = evil_directory(tmp_path / "models", marker)
    os.chmod(root / "a.joblib", 0o664)
    assert any("writable by group" in p for p in refusals(root))
    assert not marker.exists()


def test_a_link_to_a_pickle_others_could_write_is_not_unpickled(
    tmp_path: Path, marker: Path
) -> None:
    root = write_model_directory(tmp_path / "models", {"a": fitted_pipeline(0)})
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "a.joblib").write_bytes(pickle.dumps(Payload(marker)))
    (root / "a.joblib").unlink()
    (root / "a.joblib").symlink_to(shared / "a.joblib")  # judged where the bytes are
    assert any(f"{shared} is writable by group and others" in p for p in refusals(root))
    assert not marker.exists()


def test_every_parent_up_to_the_store_root_is_judged(tmp_path: Path, marker: Path) -> None:
    store = ModelStore(tmp_path / "store")
    with store.staging() as (version, stage):
        evil_directory(stage, marker)
    store.set_current(version)
    os.chmod(store.versions_dir, 0o777)  # anyone could have swapped the version in
    problems = refusals(store.path_of(version))
    assert any(f"{store.versions_dir} is writable by group and others" in p for p in problems)
    assert not marker.exists()


def test_the_operator_switch_trusts_the_same_file(tmp_path: Path, marker: Path) -> None:
    root = evil_directory(tmp_path / "models", marker)
    os.chmod(root, 0o777)
    problems = refusals(root, trust=ModelTrust(trust_all=True))
    assert marker.read_text() == "code ran"  # unpickled: the switch is the only gate
    assert any("a.joblib" in p and "not a classifier" in p for p in problems)


def test_a_real_model_loads_from_an_untrusted_place_with_the_switch(tmp_path: Path) -> None:
    model = fitted_pipeline(4)
    root = write_model_directory(tmp_path / "models", {"a": model})
    os.chown(root / "a.joblib", NOBODY, NOBODY)
    assert "owned by uid" in refusals(root)[0]
    with ModelBank.from_directory(root, trust=ModelTrust(trust_all=True)) as bank:
        assert bank.campaign_ids == ["a"]


def signed_version(tmp_path: Path, models: dict[str, Any], key: bytes = KEY) -> Path:
    """A version the trainer's own publish() wrote and signed, in a world-writable store."""
    store = ModelStore(tmp_path / "store", signing_key=key)
    catalog = _catalog(models)
    placements = [Placement(cid, {}, model=m) for cid, m in models.items()]
    version = publish(store, catalog, placements, {})
    store.set_current(version)
    directory = store.path_of(version)
    os.chmod(directory, 0o777)  # signatures vouch for files wherever they sit
    return directory


def _catalog(models: dict[str, Any]) -> list[Any]:
    from clickrouter.catalogue import Campaign

    return [Campaign(id=cid, landing_page=f"https://x.example/{cid}", payout=1.0) for cid in models]


def test_a_signed_manifest_vouches_for_the_files_it_lists(tmp_path: Path) -> None:
    model = fitted_pipeline(5)
    directory = signed_version(tmp_path, {"a": model, "b": fitted_pipeline(6)})
    assert (directory / SIGNATURE).is_file()
    assert "a.joblib: refusing to unpickle" in refusals(directory)[0]  # no key: no trust
    with ModelBank.from_directory(directory, trust=ModelTrust(signing_key=KEY)) as bank:
        profiles = random_profiles(np.random.default_rng(2), 10)
        np.testing.assert_allclose(
            bank.predict_proba(profiles)[:, bank.column_of("a")],
            sklearn_proba(model, bank.canonical(profiles)),
        )


def test_a_file_the_signed_manifest_does_not_vouch_for_is_refused(
    tmp_path: Path, marker: Path
) -> None:
    directory = signed_version(tmp_path, {"a": fitted_pipeline(5), "b": fitted_pipeline(6)})
    (directory / "a.joblib").unlink()
    (directory / "a.joblib").write_bytes(pickle.dumps(Payload(marker)))  # swapped in
    with ModelBank.from_directory(
        directory, strict=False, trust=ModelTrust(signing_key=KEY)
    ) as bank:
        assert bank.campaign_ids == ["b"]
        assert "a.joblib: sha256 differs" in bank.skipped[0]
    assert not marker.exists()


@pytest.mark.parametrize("tamper", ["other key", "flipped mac", "manifest edited"])
def test_a_wrong_signature_refuses_the_version(tmp_path: Path, marker: Path, tamper: str) -> None:
    directory = signed_version(tmp_path, {"a": fitted_pipeline(5)})
    manifest_path = directory / "manifest.json"
    if tamper == "other key":
        sign_manifest(directory, OTHER_KEY)
    elif tamper == "flipped mac":
        signature = json.loads((directory / SIGNATURE).read_text())
        signature["mac"] = ("0" if signature["mac"][0] != "0" else "1") + signature["mac"][1:]
        (directory / SIGNATURE).write_text(json.dumps(signature))
    else:  # the attacker lists his own file's digest
        (directory / "a.joblib").unlink()
        (directory / "a.joblib").write_bytes(pickle.dumps(Payload(marker)))
        manifest = json.loads(manifest_path.read_text())
        digest = hashlib.sha256((directory / "a.joblib").read_bytes()).hexdigest()
        manifest["files"]["a.joblib"] = digest
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="version refused") as info:
        ModelBank.from_directory(directory, trust=ModelTrust(signing_key=KEY))
    expected = "signed with another key" if tamper == "other key" else "does not match"
    assert expected in info.value.message
    assert not marker.exists()


def test_a_catalogue_that_differs_from_the_signed_manifest_is_refused(tmp_path: Path) -> None:
    directory = signed_version(tmp_path, {"a": fitted_pipeline(5)})
    catalog = json.loads((directory / "campaigns.json").read_text())
    catalog[0]["landing_page"] = "https://attacker.example/"
    (directory / "campaigns.json").write_text(json.dumps(catalog))
    with pytest.raises(ModelLoadError, match=r"campaigns\.json: sha256 differs"):
        ModelBank.from_directory(directory, trust=ModelTrust(signing_key=KEY))


def test_the_key_file_must_be_private_and_long_enough(tmp_path: Path) -> None:
    key_file = tmp_path / "model.key"
    key_file.write_bytes(b"x" * 40)
    os.chmod(key_file, 0o644)
    with pytest.raises(InvalidInput, match="chmod 600"):
        read_key_file(key_file)
    os.chmod(key_file, 0o600)
    assert read_key_file(key_file) == b"x" * 40
    key_file.write_bytes(b"short")
    with pytest.raises(InvalidInput, match="too short"):
        read_key_file(key_file, option="--model-signing-key-file")


def test_published_files_are_not_group_writable_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        directory = signed_version(tmp_path, {"a": fitted_pipeline(5)}, key=KEY)
    finally:
        os.umask(old)
    os.chmod(directory, 0o755)  # undo the fixture's world-writable dir
    for path in [directory, directory.parent, directory.parent.parent, *directory.iterdir()]:
        assert path.stat().st_mode & 0o022 == 0, path
    with ModelBank.from_directory(directory) as bank:  # trusted by ownership alone
        assert bank.campaign_ids == ["a"]


# -- skops: only listed types are built --------------------------------------------


def _fitted_with(transformer: Any) -> Any:
    rng = np.random.default_rng(0)
    frame = profile_frame(random_profiles(rng, 100))
    labels = rng.random(len(frame)) < 0.3
    pre = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["country"]), (transformer, ["local_hour"])
    )
    return make_pipeline(pre, LogisticRegression()).fit(frame, labels)


@pytest.mark.parametrize("function", [eval, exec, np.save])
def test_a_skops_file_naming_a_code_running_function_is_refused(
    tmp_path: Path, function: Any
) -> None:
    model = _fitted_with(FunctionTransformer(np.asarray))
    name, _, columns = model.steps[0][1].transformers_[1]
    model.steps[0][1].transformers_[1] = (name, FunctionTransformer(function), columns)
    path = tmp_path / "a.skops"
    sio.dump(model, path)
    qualified = f"{function.__module__}.{function.__name__}"
    assert qualified in sio.get_untrusted_types(file=path)
    with pytest.raises(ModelFileError, match="refusing types") as info:
        load_model(path)
    assert qualified in str(info.value)


def test_skops_files_of_tree_models_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = profile_frame(random_profiles(rng, 200))
    pre = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["country", "os"]))
    forest = make_pipeline(pre, RandomForestClassifier(n_estimators=3, random_state=0))
    forest.fit(frame, rng.random(len(frame)) < 0.3)
    root = write_model_directory(tmp_path / "models", {})
    sio.dump(forest, root / "f.skops")
    (root / "campaigns.json").write_text(
        json.dumps([{"id": "f", "landing_page": "https://x.example/", "payout": 1}])
    )
    os.chmod(root, 0o777)  # skops needs no trusted source: it builds listed types only
    loaded = read_directory(root)
    assert loaded.problems == [] and type(loaded.models[0]).__name__ == "Pipeline"


# -- landing pages: where every click of a campaign is redirected ---------------------


@pytest.mark.parametrize(
    "page",
    [
        "javascript:alert(document.cookie)",
        "/relative/landing",
        "//attacker.example/x",
        "ftp://files.example/x",
        "data:text/html,<script>alert(1)</script>",
        "https:///no-host",
        "https://shop.example/\r\nSet-Cookie: a=b",
        "https://shop.example/é",
    ],
)
def test_a_landing_page_that_is_not_an_absolute_http_url_is_refused(
    tmp_path: Path, page: str
) -> None:
    campaigns = [
        {"id": "good", "landing_page": "https://shop.example/?k={click_id}", "payout": 1.0},
        {"id": "bad", "landing_page": page, "payout": 1.0},
    ]
    models = {"good": fitted_pipeline(0), "bad": fitted_pipeline(1)}
    root = write_model_directory(tmp_path / "models", models, campaigns)
    problems = refusals(root)
    assert any("entry 1" in p and "landing_page" in p and "'bad'" in p for p in problems)
    with ModelBank.from_directory(root, strict=False) as bank:
        assert bank.campaign_ids == ["good"]


def test_train_signs_with_its_key_and_the_predictor_trusts_it_anywhere(
    tmp_path: Path, marker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clickrouter.cli import main

    catalog = tmp_path / "campaigns.json"
    catalog.write_text(json.dumps(_catalog_entries(["a", "b"])))
    key_file = tmp_path / "model.key"
    key_file.write_bytes(KEY)
    os.chmod(key_file, 0o600)
    store = tmp_path / "store"
    command = ["train", "--cold-start", "--store", str(store), "--catalog", str(catalog)]
    assert main([*command, "--signing-key-file", str(key_file)]) == 0
    directory = ModelStore(store).current_path()
    os.chmod(store / "versions", 0o777)  # a shared store: ownership vouches for nothing
    assert "refusing to unpickle" in refusals(directory)[0]
    with ModelBank.from_directory(directory, trust=ModelTrust(signing_key=KEY)) as bank:
        assert bank.campaign_ids == ["a", "b"]
    os.chmod(key_file, 0o644)
    assert main([*command, "--signing-key-file", str(key_file)]) == 2
    assert f"--signing-key-file {key_file}: mode 644" in capsys.readouterr().err


def _catalog_entries(ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": i, "landing_page": f"https://x.example/{i}", "payout": 1.0} for i in ids]
