"""Schemathesis, every check and every phase, against a real predictor on loopback.

The run is the command an operator would type (``schemathesis run URL --checks
all``): examples, coverage (boundaries, missing and wrong-typed fields,
unsupported methods), fuzzing and stateful sequences (a decision's click id
fed to a postback). Any failure fails the test with schemathesis's report,
which names each failing request and how to replay it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickrouter.serving.http import PredictorServer
from clickrouter.serving.http.openapi import OPERATIONS
from serving.http.http_support import ADMIN_TOKEN
from serving.http.postback_support import GLOBAL_SECRET, default_secrets, signed_settings

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# The sale and request times allowed by the document are static, the server's
# bound (clock_skew_seconds around its clock) moves with the clock: with a skew
# wider than every time the document allows, the run checks the static rules.
WIDE_SKEW_SECONDS = 1e12


@pytest.fixture
def server(sample_models: Path, events_dir: Path, tmp_path: Path) -> Iterator[PredictorServer]:
    secrets = default_secrets(tmp_path / "postback-secrets")
    settings = signed_settings(secrets, clock_skew_seconds=WIDE_SKEW_SECONDS)
    with PredictorServer(settings, sample_models, events_dir) as running:
        yield running


def run_schemathesis(url: str, directory: Path, *, examples: int, seed: int) -> None:
    """``schemathesis run`` with all checks; fails the test with its report."""
    config = directory / "schemathesis.toml"
    # credentials of the documented security schemes: postbacks and /admin get past
    # authentication, so what lies behind it is tested too (and ignored_auth checks it)
    config.write_text(
        f'[auth.openapi.postbackToken]\napi_key = "{GLOBAL_SECRET}"\n'
        f'[auth.openapi.adminToken]\nbearer = "{ADMIN_TOKEN}"\n'
    )
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    done = subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=600, check=False
    )
    report = done.stdout[-20000:] + done.stderr[-5000:]
    assert done.returncode == 0, f"schemathesis found failures:\n{report}"
    # every operation of the document (schemathesis leaves out the document's own route)
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", done.stdout)
    assert counts is not None, report
    assert int(counts[1]) == int(counts[2]) == int(counts[3]) == len(OPERATIONS) - 1, report


def test_the_server_conforms_to_its_document(server: PredictorServer, tmp_path: Path) -> None:
    run_schemathesis(server.url, tmp_path, examples=15, seed=1)


@pytest.mark.slow
def test_the_server_conforms_to_its_document_at_length(
    server: PredictorServer, tmp_path: Path
) -> None:
    run_schemathesis(server.url, tmp_path, examples=400, seed=20261205)
