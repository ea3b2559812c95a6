"""``clickrouter score``: score a JSON-lines file of ad requests with a model directory."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clickrouter.errors import ClickrouterError, InvalidInput


def register(subparsers: Any) -> None:
    score = subparsers.add_parser(
        "score", help="score ad requests (JSON lines): P(sale) of every offer"
    )
    score.add_argument("--models", required=True, type=Path, help="model directory or model store")
    score.add_argument("--requests", required=True, type=Path, help="JSON-lines file, '-' = stdin")
    score.add_argument(
        "--top", type=_positive_int, default=None, help="print only the K most likely offers"
    )
    score.add_argument("--batch", type=_positive_int, default=1024, help="requests per batch")
    score.set_defaults(handler=run_score)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def run_score(args: argparse.Namespace) -> int:
    from clickrouter.serving.bank import ModelBank

    with ModelBank.open(args.models) as bank:
        batch: list[tuple[int, dict[str, Any]]] = []
        for item in _read_requests(args.requests):
            batch.append(item)
            if len(batch) >= args.batch:
                _score_batch(bank, batch, args.top, args.requests)
                batch = []
        if batch:
            _score_batch(bank, batch, args.top, args.requests)
    return 0


def _read_requests(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        stream = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{name}: cannot read: {exc.strerror}") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{name}:{number}: invalid JSON: {exc.msg}") from None
            if not isinstance(request, dict):
                raise InvalidInput(f"{name}:{number}: expected a JSON object per line")
            yield number, request


def _score_batch(
    bank: Any, batch: list[tuple[int, dict[str, Any]]], top: int | None, path: Path
) -> None:
    ids = bank.offer_names  # the campaign id, "<campaign>/<page>" for a page other than default
    for number, request in batch:  # validate each line so the error names it
        try:
            bank.canonical([request])
        except ClickrouterError as exc:
            raise InvalidInput(f"{path}:{number}: {exc.message}") from None
    proba = bank.predict_proba([request for _, request in batch])
    out = sys.stdout
    for row in proba:
        if top is None:
            scores = dict(zip(ids, row.tolist(), strict=True))
        else:
            best = row.argsort()[::-1][:top]
            scores = {ids[i]: float(row[i]) for i in best}
        out.write(json.dumps(scores) + "\n")
