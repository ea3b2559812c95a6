"""``clickrouter openapi``: write the predictor's OpenAPI document (served at ``/openapi.json``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from clickrouter.errors import InvalidInput


def register(subparsers: Any) -> None:
    openapi = subparsers.add_parser(
        "openapi",
        help="write the HTTP API's OpenAPI 3.1 document (served at /openapi.json)",
        description="Writes the OpenAPI document generated from the request and response types"
        " of the predictor. docs/reference/openapi.json is this command's output.",
    )
    openapi.add_argument(
        "--out", type=Path, default=None, help="file to write (default: standard output)"
    )
    openapi.set_defaults(handler=run_openapi)


def run_openapi(args: argparse.Namespace) -> int:
    from clickrouter.serving.http.openapi import openapi_json

    text = openapi_json()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, args.out)  # a reader never sees half a document
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"--out {args.out}: {exc.strerror}") from None
    return 0
