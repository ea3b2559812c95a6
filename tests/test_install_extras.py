"""The predictor runs on the base install; the other stages name the extra they lack.

Two environments without the ``train``, ``consume``, ``redis`` and ``demo``
extras:

* every default run: this interpreter with an import hook (a ``sitecustomize``
  on ``PYTHONPATH``, so the server's child processes get it too) that makes
  their packages unimportable;
* ``-m slow``: a real virtual environment where ``pip install '.[serve]'``
  installed the project from the same package index as ``make install``.

In both, ``clickrouter serve`` loads a real sklearn model version (compiled
from scratch: a fresh cache directory) and answers over loopback, and
``clickrouter score`` scores a request file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from process_support import wait_until
from reference.sample_models import make_sample_directory

REPO = Path(__file__).resolve().parents[1]
# the top-level packages of the optional extras (train, consume, redis, demo)
EXTRA_PACKAGES = ("dask", "distributed", "matplotlib", "rich", "redis", "hiredis", "pyarrow")

BLOCKER = textwrap.dedent(
    '''
    """Makes the packages in CLICKROUTER_TEST_BLOCKED unimportable in this process."""
    import os
    import sys

    _BLOCKED = frozenset(filter(None, os.environ.get("CLICKROUTER_TEST_BLOCKED", "").split(",")))


    class _NotInstalled:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.partition(".")[0] in _BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, _NotInstalled())
    '''
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_directory(tmp_path_factory.mktemp("extras") / "models", 4, seed=2)


@pytest.fixture
def blocked_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python processes cannot import the extras' packages."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    env["CLICKROUTER_TEST_BLOCKED"] = ",".join(EXTRA_PACKAGES)
    return env


def test_the_hook_hides_the_extras(blocked_env: dict[str, str]) -> None:
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec(sys.argv[1]) is None)"
    for name in EXTRA_PACKAGES:
        assert run([sys.executable, "-c", probe, name], blocked_env).returncode == 1, name
    assert run([sys.executable, "-c", probe, "sklearn"], blocked_env).returncode == 0


def test_serve_answers_without_the_extras(
    models: Path, blocked_env: dict[str, str], tmp_path: Path
) -> None:
    clickrouter = [sys.executable, "-m", "clickrouter.cli"]
    decision = serve_and_decide(clickrouter, models, blocked_env, tmp_path)
    assert decision["campaign_id"] in {entry["id"] for entry in catalogue(models)}
    assert 0.0 <= decision["probability"] <= 1.0


def test_score_without_the_extras(
    models: Path, blocked_env: dict[str, str], tmp_path: Path
) -> None:
    scores = score([sys.executable, "-m", "clickrouter.cli"], models, blocked_env, tmp_path)
    ids = {entry["id"] for entry in catalogue(models)}
    assert [set(line) for line in scores] == [ids, ids]
    assert all(0.0 <= p <= 1.0 for line in scores for p in line.values())


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (["train", "--store", "store", "--data", "data"], "train"),
        (["consume", "--source", "events", "--data", "data"], "consume"),
        (["serve", "--models", "MODELS", "--events", "redis://127.0.0.1:9/events"], "redis"),
    ],
)
def test_a_command_names_the_extra_it_lacks(
    command: list[str], extra: str, models: Path, blocked_env: dict[str, str], tmp_path: Path
) -> None:
    argv = [str(models) if arg == "MODELS" else arg for arg in command]
    done = run([sys.executable, "-m", "clickrouter.cli", *argv], blocked_env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"pip install 'clickrouter[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_importing_the_trainer_names_its_extra(blocked_env: dict[str, str]) -> None:
    code = (
        "from clickrouter.extras import MissingExtra\n"
        "try:\n    import clickrouter.training\n"
        "except MissingExtra as exc:\n    print(exc.message)\n"
    )
    done = run([sys.executable, "-c", code], blocked_env)
    assert done.returncode == 0, done.stderr
    assert "pip install 'clickrouter[train]'" in done.stdout


@pytest.mark.slow
def test_serve_in_a_venv_with_only_the_serve_extra(models: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # a copy: pip builds in the source tree, which others may be reading
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    install = run([python, "-m", "pip", "install", "--quiet", f"{source}[serve]"], os.environ)
    assert install.returncode == 0, install.stderr[-4000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec(sys.argv[1]) is not None)"
    for name in EXTRA_PACKAGES:
        assert run([python, "-c", probe, name], env).returncode == 0, f"{name} is installed"
    clickrouter = [str(venv / "bin" / "clickrouter")]
    decision = serve_and_decide(clickrouter, models, env, tmp_path)
    assert decision["campaign_id"] in {entry["id"] for entry in catalogue(models)}
    assert len(score(clickrouter, models, env, tmp_path)) == 2


# -- helpers ---------------------------------------------------------------


def run(
    argv: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def catalogue(models: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads((models / "campaigns.json").read_text())
    return entries


def serve_and_decide(
    clickrouter: list[str], models: Path, env: Mapping[str, str], tmp_path: Path
) -> dict[str, object]:
    """Start ``clickrouter serve`` on a free loopback port, wait until ready, decide once."""
    port_file = tmp_path / "port"
    argv = [
        *clickrouter,
        "serve",
        "--models", str(models),
        "--port", "0",
        "--port-file", str(port_file),
        "--cache-dir", str(tmp_path / "cache"),  # fresh: the bank is compiled here
        "--events", str(tmp_path / "events"),
        "--postback-auth", "off",
    ]  # fmt: skip
    with started(argv, env, tmp_path / "serve.log") as server:
        wait_until(lambda: port_file.is_file() or server.poll() is not None, 120, "the port")
        assert server.poll() is None, "serve exited before binding its port"
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        wait_until(lambda: ready(url) or server.poll() is not None, 300, "a loaded model")
        assert server.poll() is None, "serve exited before loading the models"
        body = json.dumps({"profile": {"country": "FR", "os": "android"}}).encode()
        request = urllib.request.Request(f"{url}/v1/decide", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
            decision: dict[str, object] = json.loads(answer.read())
    return decision


def score(
    clickrouter: list[str], models: Path, env: Mapping[str, str], tmp_path: Path
) -> list[dict[str, float]]:
    requests = tmp_path / "requests.jsonl"
    lines = [{"country": "FR", "os": "android"}, {"country": "US", "local_hour": 20}]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    done = run([*clickrouter, "score", "--models", str(models), "--requests", str(requests)], env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def started(
    argv: list[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess (stderr to ``log``) stopped with SIGTERM, then SIGKILL, when the block ends."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, env=dict(env), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield proc
    except BaseException:
        print(log.read_text(errors="replace")[-4000:], file=sys.stderr)  # the server's side
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
