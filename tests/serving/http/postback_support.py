"""Signing postbacks the way an advertiser does, and a predictor that requires it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from clickrouter.config import Settings
from clickrouter.serving.http.postback_auth import sign
from serving.http.http_support import settings

GLOBAL_SECRET = "global-secret-0123456789abcdef"
ADVERTISER = "acme"
ADVERTISER_SECRET = "acme-secret-0123456789abcdef"
CLICK_SECRET = "click-secret-0123456789abcdef"
POSTBACK = "/v1/postback"


def write_secrets(path: Path, lines: list[str]) -> Path:
    """Replace the secrets file atomically, as an operator's tooling would."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    tmp.replace(path)
    return path


def signed_headers(
    secret: str,
    method: str,
    query: Mapping[str, str],
    body: bytes = b"",
    *,
    at: float | None = None,
) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    signature = sign(secret, timestamp, method, POSTBACK, query, body)
    return {"X-Clickrouter-Timestamp": timestamp, "X-Clickrouter-Signature": signature}


def signed_get(
    url: str, query: dict[str, str], secret: str = GLOBAL_SECRET, **kw: Any
) -> httpx.Response:
    return httpx.get(
        url + POSTBACK, params=query, headers=signed_headers(secret, "GET", query, **kw)
    )


def token_get(url: str, query: dict[str, str], secret: str = GLOBAL_SECRET) -> httpx.Response:
    return httpx.get(url + POSTBACK, params={**query, "token": secret})


def default_secrets(path: Path) -> Path:
    """A secrets file with a global secret and one advertiser's."""
    return write_secrets(path, [f"* {GLOBAL_SECRET}", f"{ADVERTISER} {ADVERTISER_SECRET}"])


def signed_settings(secrets_file: Path, **overrides: object) -> Settings:
    """Test settings requiring authenticated postbacks (secrets from ``secrets_file``)."""
    return settings(postback_secrets_file=str(secrets_file), click_secret=CLICK_SECRET, **overrides)


def refused_counts(url: str) -> dict[str, float]:
    """``clickrouter_postbacks_refused_total`` per reason, from ``/metrics``."""
    counts: dict[str, float] = {}
    prefix = 'clickrouter_postbacks_refused_total{reason="'
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(prefix):
            reason = line[len(prefix) :].split('"', 1)[0]
            counts[reason] = float(line.split()[-1])
    return counts
