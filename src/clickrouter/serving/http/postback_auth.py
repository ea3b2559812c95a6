"""Who may record a sale: postback authentication and replay protection.

Sales arrive server to server from advertisers and trackers. Two conventions
are accepted, each checked against the secrets of the ``advertiser`` query
parameter (plus the global ``*`` secrets):

* a **shared secret in the URL**: ``token=<secret>``. Simple for a tracker that
  can only be given a URL template; the secret travels with every request,
  so there is no replay protection.
* an **HMAC-SHA256 signature**: header ``X-Clickrouter-Timestamp`` (epoch
  seconds) and ``X-Clickrouter-Signature`` (hex; ``sha256=`` prefix allowed),
  or the query parameters ``timestamp`` and ``signature``, over
  :func:`signed_message`: the timestamp, method, path, the canonical query
  (without ``signature``) and the body. The timestamp must be within ``clock_skew_seconds`` of
  the server's clock, and a signature is accepted once while it is valid.

Secrets come from a file (``postback_secrets_file``: lines ``<advertiser or *>
<secret>``, re-read when it changes, so two secrets of one advertiser are
valid at once during a rotation) and/or the environment
(``CLICKROUTER_POSTBACK_SECRET``, a global one). With none configured,
postbacks are refused (503, saying how to configure them), unless the
operator turned authentication off for local development.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from clickrouter.errors import InvalidInput
from clickrouter.serving.engine.clickids import MIN_SECRET_CHARS
from clickrouter.serving.engine.refusal import PostbackRefused

if TYPE_CHECKING:
    from clickrouter.config import Settings

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = b"x-clickrouter-timestamp"
SIGNATURE_HEADER = b"x-clickrouter-signature"
POSTBACK_PATH = "/v1/postback"
TOKEN_PARAM = "token"
TIMESTAMP_PARAM = "timestamp"
SIGNATURE_PARAM = "signature"
ADVERTISER_PARAM = "advertiser"
GLOBAL = "*"
# signatures remembered at once (each for at most 2 x clock_skew_seconds); beyond
# this, signed postbacks are answered 503 until older ones expire
REPLAY_CAPACITY = 500_000
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SIGNATURE = re.compile(r"(?:sha256=)?([0-9a-fA-F]{64})")

HOW_TO_CONFIGURE = (
    "set a postback secrets file (--postback-secrets-file or "
    "CLICKROUTER_POSTBACK_SECRETS_FILE) or a global secret (CLICKROUTER_POSTBACK_SECRET); "
    "--postback-auth off accepts unauthenticated postbacks (local development only)"
)


Secrets = dict[str, tuple[bytes, ...]]


def parse_secrets(text: str, origin: str) -> Secrets:
    """``<advertiser or *> <secret>`` per line; blank lines and ``#`` comments skipped."""
    found: dict[str, list[bytes]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise InvalidInput(f"{origin} {number}: expected '<advertiser or *> <secret>'")
        name, secret = fields
        if name != GLOBAL and not _NAME.fullmatch(name):
            raise InvalidInput(f"{origin} {number}: advertiser must match [A-Za-z0-9._-]{{1,128}}")
        if len(secret) < MIN_SECRET_CHARS:
            raise InvalidInput(
                f"{origin} {number}: secret shorter than {MIN_SECRET_CHARS} characters"
            )
        found.setdefault(name, []).append(secret.encode("utf-8"))
    return {name: tuple(values) for name, values in found.items()}


class SecretsFile:
    """The secrets of a file, read again whenever its inode, size or mtime changes.

    A file that became unreadable or malformed keeps the last good secrets in
    force (and says so in the log): a half-written edit must not lock every
    advertiser out, nor leave postbacks open.
    """

    def __init__(self, path: str | os.PathLike[str], setting: str = "postback_secrets_file"):
        self.path = Path(path)
        self.setting = setting
        self._origin = f"{setting} {str(self.path)!r} line"
        try:
            self._stamp = self._stat()
            self.secrets = parse_secrets(self.path.read_text("utf-8"), self._origin)
        except OSError as exc:
            raise InvalidInput(f"{setting} {str(self.path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"{setting} {str(self.path)!r}: not UTF-8 text") from None

    def _stat(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> Secrets:
        try:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                self.secrets = parse_secrets(self.path.read_text("utf-8"), self._origin)
                log.info("postback secrets re-read from %s", self.path)
        except (OSError, UnicodeDecodeError, InvalidInput) as exc:
            log.error(
                "postback secrets file %s unusable, keeping the previous ones: %s", self.path, exc
            )
        return self.secrets


def canonical_query(query: Mapping[str, str]) -> str:
    """Parameters but ``signature``, sorted by name, each ``name=value``
    percent-encoded (RFC 3986: spaces as ``%20``)."""
    return "&".join(
        f"{quote(name, safe='-._~')}={quote(value, safe='-._~')}"
        for name, value in sorted(query.items())
        if name != SIGNATURE_PARAM
    )


def signed_message(
    timestamp: str, method: str, path: str, query: Mapping[str, str], body: bytes
) -> bytes:
    """What the HMAC covers: ``timestamp\\nMETHOD\\npath\\ncanonical query\\n`` + body."""
    head = f"{timestamp}\n{method.upper()}\n{path}\n{canonical_query(query)}\n"
    return head.encode("utf-8") + body


def sign(
    secret: str | bytes,
    timestamp: str,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes = b"",
) -> str:
    """The hex HMAC-SHA256 an advertiser sends in ``X-Clickrouter-Signature``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = signed_message(timestamp, method, path, query, body)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_query(
    secret: str | bytes,
    query: Mapping[str, str],
    *,
    now: float | None = None,
    method: str = "GET",
    path: str = POSTBACK_PATH,
) -> dict[str, str]:
    """``query`` plus its ``timestamp`` and ``signature`` parameters (a client's helper)."""
    signed = {**query, TIMESTAMP_PARAM: str(int(time.time() if now is None else now))}
    signed[SIGNATURE_PARAM] = sign(secret, signed[TIMESTAMP_PARAM], method, path, signed)
    return signed


class ReplayGuard:
    """Signatures seen, each kept until its timestamp leaves the acceptance window."""

    def __init__(self, capacity: int = REPLAY_CAPACITY) -> None:
        self.capacity = capacity
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []  # heap of (forget at, signature)

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, signature: str, forget_at: float, now: float) -> None:
        expiry, seen = self._expiry, self._seen
        while expiry and expiry[0][0] < now:
            seen.discard(heapq.heappop(expiry)[1])
        if signature in seen:
            raise PostbackRefused(403, "replayed", "postback signature already used (replay)")
        if len(seen) >= self.capacity:
            raise PostbackRefused(
                503, "replay_guard_full", "too many signed postbacks in the window; retry later"
            )
        seen.add(signature)
        heapq.heappush(expiry, (forget_at, signature))


class PostbackAuthenticator:
    """Checks one postback request against the configured secrets.

    ``required=False`` accepts every postback unauthenticated (local development).
    """

    def __init__(
        self,
        *,
        required: bool = True,
        secrets_file: SecretsFile | None = None,
        global_secret: str | None = None,
        skew_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
        replay: ReplayGuard | None = None,
    ) -> None:
        if global_secret is not None and len(global_secret) < MIN_SECRET_CHARS:
            raise InvalidInput(f"postback_secret: shorter than {MIN_SECRET_CHARS} characters")
        self.required = required
        self.secrets_file = secrets_file
        self._global = (global_secret.encode("utf-8"),) if global_secret else ()
        self.skew = skew_seconds
        self.clock = clock
        self.replay = replay if replay is not None else ReplayGuard()

    @classmethod
    def from_settings(cls, settings: Settings) -> PostbackAuthenticator:
        required = settings.postback_auth == "required"
        if not required:
            log.warning("postback authentication is OFF: anyone reaching the port can record sales")
        secrets_file = settings.postback_secrets_file
        auth = cls(
            required=required,
            secrets_file=None if secrets_file is None else SecretsFile(secrets_file),
            global_secret=settings.postback_secret,
            skew_seconds=settings.clock_skew_seconds,
        )
        if required and secrets_file is None and settings.postback_secret is None:
            log.warning(
                "no postback secret is configured: postbacks are refused; %s", HOW_TO_CONFIGURE
            )
        return auth

    def _candidates(self, advertiser: str | None) -> tuple[bytes, ...]:
        secrets = self.secrets_file.current() if self.secrets_file is not None else {}
        if not secrets and not self._global:
            raise PostbackRefused(
                503, "not_configured", f"postbacks are disabled: {HOW_TO_CONFIGURE}"
            )
        found = secrets.get(GLOBAL, ()) + self._global
        if advertiser is not None:
            found = secrets.get(advertiser, ()) + found
        return found

    def authenticate(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[bytes, bytes],
        body: bytes,
    ) -> str | None:
        """The signature when the postback is signed, None when a token (or no
        check) let it in; raises :class:`PostbackRefused` otherwise."""
        if not self.required:
            return None
        advertiser = query.get(ADVERTISER_PARAM)
        if advertiser is not None and not _NAME.fullmatch(advertiser):
            raise PostbackRefused(400, "bad_advertiser", "parameter 'advertiser': invalid name")
        candidates = self._candidates(advertiser)
        signature = _header(headers, SIGNATURE_HEADER) or query.get(SIGNATURE_PARAM)
        if signature is not None:
            timestamp = _header(headers, TIMESTAMP_HEADER) or query.get(TIMESTAMP_PARAM)
            return self._check_signature(
                signature, timestamp, method, path, query, body, candidates
            )
        token = query.get(TOKEN_PARAM)
        if token is None:
            raise PostbackRefused(
                401,
                "unsigned",
                "postback not authenticated: send 'token=<secret>' in the URL or sign it "
                "(timestamp and signature: X-Clickrouter-* headers or query parameters)",
            )
        given = token.encode("utf-8")
        if not any(hmac.compare_digest(given, secret) for secret in candidates):
            raise PostbackRefused(403, "bad_token", _wrong("token", advertiser))
        return None

    def _check_signature(
        self,
        signature: str,
        timestamp: str | None,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: bytes,
        candidates: tuple[bytes, ...],
    ) -> str:
        if (
            timestamp is None
            or not (timestamp.isascii() and timestamp.isdigit())
            or len(timestamp) > 12
        ):
            raise PostbackRefused(
                401, "bad_timestamp", "signature timestamp: expected epoch seconds"
            )
        match = _SIGNATURE.fullmatch(signature.strip())
        if match is None:
            raise PostbackRefused(401, "bad_signature", "signature: expected 64 hex digits")
        signed_at, now = int(timestamp), self.clock()
        if signed_at > now + self.skew:
            raise PostbackRefused(
                401, "signature_future", "signature timestamp ahead of the server's clock"
            )
        if signed_at < now - self.skew:
            raise PostbackRefused(401, "signature_expired", "signature timestamp too old")
        given = match[1].lower()
        message = signed_message(timestamp, method, path, query, body)
        expected = (hmac.new(key, message, hashlib.sha256).hexdigest() for key in candidates)
        if not any(hmac.compare_digest(given, e) for e in expected):
            raise PostbackRefused(
                403, "bad_signature", _wrong("signature", query.get(ADVERTISER_PARAM))
            )
        self.replay.admit(given, signed_at + self.skew, now)
        return given


def _header(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


def _wrong(what: str, advertiser: str | None) -> str:
    whose = f"advertiser {advertiser!r}" if advertiser is not None else "the global secret"
    return f"postback {what} does not match any secret of {whose}"
