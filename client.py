"""A caller of the online endpoint: send records, print the predictions as a table.

Reads the payload from --file (a JSON body {"records": [...]}) or takes the first --n rows
of the training data (--data, default $TRAINING_DATA or day1_breast_cancer.csv beside this
script, else scikit-learn's copy of the same data). Writes the table to stdout; nothing to disk.
Imports nothing from this project: it is what any other team's caller would look like.

    python client.py                                   # 3 rows to http://localhost:8000/predict
    python client.py --url http://127.0.0.1:8001 --n 5
    python client.py --file payload.json --api-key "$SCORING_API_KEY"
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://localhost:8000"
TARGET_COLUMN = "target"
SHOWN_FEATURES = 2  # input columns repeated in the table, to tell the rows apart


class ClientError(Exception):
    """An expected failure, with the one line to print."""


def predict_url(url: str) -> str:
    """The /predict URL for a base URL (http://host:port) or a URL already ending in /predict."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        raise ClientError(f"--url must look like http://host:port, got {url!r}")
    return url if url.endswith("/predict") else url + "/predict"


def sample_records(n: int, data: Path | None) -> list[dict[str, float]]:
    """The first n rows of the training data, features only."""
    path = data or Path(os.environ.get("TRAINING_DATA") or Path(__file__).resolve().parent / "day1_breast_cancer.csv")
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as handle:
            records = []
            for row in csv.DictReader(handle):
                if len(records) == n:
                    break
                try:
                    records.append({k: float(v) for k, v in row.items() if k != TARGET_COLUMN})
                except (TypeError, ValueError):
                    raise ClientError(f"{path} line {len(records) + 2} is not all numbers: pass --file instead") from None
        if not records:
            raise ClientError(f"{path} has no rows: pass --file instead")
        return records
    if data is not None:
        raise ClientError(f"{data} not found")
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError:
        raise ClientError(f"{path} not found and scikit-learn is not installed: pass --file or --data") from None
    frame = load_breast_cancer(as_frame=True).data.head(n)
    return [{k: float(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def load_payload(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ClientError(f"{path} is not valid JSON: {exc}") from None


def post(url: str, payload: Any, api_key: str | None, timeout: float) -> tuple[dict[str, Any], float]:
    """POST the payload; (decoded answer, seconds). Every failure becomes one ClientError line."""
    body = json.dumps(payload, allow_nan=True).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise ClientError(f"{url} answered {exc.code} {exc.reason}: {_server_message(exc)}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise ClientError(f"cannot reach {url}: {reason} (is the API running? start it with make serve)") from None
    except (socket.timeout, TimeoutError):
        raise ClientError(f"no answer from {url} within {timeout:g} s (raise --timeout?)") from None
    except (ConnectionError, OSError) as exc:
        raise ClientError(f"connection to {url} failed: {exc}") from None
    elapsed = time.perf_counter() - start
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ClientError(f"{url} answered something that is not JSON: is --url the scoring API?") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise ClientError(f'{url} answered JSON without "results": is --url the scoring API?')
    return answer, elapsed


def _server_message(error: urllib.error.HTTPError) -> str:
    try:
        text = error.read().decode("utf-8", "replace")
    except OSError:
        return "(no body)"
    try:
        detail = json.loads(text).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if detail is None:
        detail = " ".join(text.split())[:200] or "(no body)"
    elif not isinstance(detail, str):
        detail = json.dumps(detail)[:200]
    if error.code == 404:
        detail += " (check --url: the base URL is enough, e.g. http://localhost:8000)"
    return detail


def format_table(answer: dict[str, Any], elapsed: float) -> str:
    results = answer["results"]
    first = results[0]["input"] if results and isinstance(results[0].get("input"), dict) else {}
    shown = list(first)[:SHOWN_FEATURES]
    header = ["record", "prediction", "probability", *shown]
    rows = [header]
    for index, result in enumerate(results):
        inputs = result.get("input") if isinstance(result.get("input"), dict) else {}
        probability = result.get("probability")
        rows.append([
            str(index),
            str(result.get("prediction")),
            f"{probability:.6f}" if isinstance(probability, (int, float)) else str(probability),
            *(f"{inputs.get(name)}" for name in shown),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"model {answer.get('model_version', '?')}: {len(results)} prediction(s) in {elapsed * 1000:.1f} ms"]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Send records to the scoring API and print its predictions.",
    )
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="the API's base URL; a URL ending in /predict works too (default: %(default)s)")
    parser.add_argument("--file", type=Path, default=None, help='JSON payload {"records": [...]} to send as is')
    parser.add_argument("--n", type=int, default=3, help="rows of the training data to send, without --file (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None,
                        help="CSV to take rows from (default: $TRAINING_DATA or ./day1_breast_cancer.csv)")
    parser.add_argument("--api-key", default=None,
                        help="Bearer key for an API started with SCORING_API_KEY; when not given, "
                             "$SCORING_API_KEY is used (never printed)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    api_key = args.api_key or os.environ.get("SCORING_API_KEY") or None
    try:
        if args.n < 1:
            raise ClientError(f"--n must be at least 1, got {args.n}")
        url = predict_url(args.url)
        payload = load_payload(args.file) if args.file is not None else {"records": sample_records(args.n, args.data)}
        answer, elapsed = post(url, payload, api_key, args.timeout)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(answer, elapsed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
