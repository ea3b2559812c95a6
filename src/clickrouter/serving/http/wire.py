"""The bytes of the HTTP/1.1 answers the protocols write themselves.

The inline answers of the hot routes and the refusals of the server limits
leave without uvicorn's response machinery: their status line, headers and
body are assembled here, with the header checks uvicorn applies to its own.
"""

from __future__ import annotations

import http
import re

import msgspec

from clickrouter.serving.http.app import Response, error_response

# what uvicorn refuses in a response header name or value (response splitting)
HEADER_RE = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
HEADER_VALUE_RE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"".join([b"HTTP/1.1 ", str(status).encode(), b" ", phrase, b"\r\n"])


STATUS_LINE = {status: _status_line(status) for status in range(100, 600)}


def http_response(response: Response, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive response (headers checked as uvicorn does)."""
    extra = default_headers + response.headers
    for name, value in extra:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            response = error_response(500, "internal error: invalid response header")
            extra = default_headers
            break
    parts = [
        STATUS_LINE[response.status],
        b"content-type: ",
        response.content_type,
        b"\r\ncontent-length: ",
        str(len(response.body)).encode("ascii"),
        b"\r\n",
    ]
    for name, value in extra:
        parts += [name, b": ", value, b"\r\n"]
    parts += [b"\r\n", response.body]
    return b"".join(parts)


def refusal(status: int, message: str) -> bytes:
    """The bytes of a JSON error answer after which the connection closes."""
    body = msgspec.json.encode({"error": message})
    head = [STATUS_LINE[status], b"content-type: application/json\r\n"]
    head.append(b"content-length: %d\r\nconnection: close\r\n" % len(body))
    if status == 503:
        head.append(b"retry-after: 1\r\n")
    return b"".join([*head, b"\r\n", body])
