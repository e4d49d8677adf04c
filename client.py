"""A caller of the online endpoint: send records, print the predictions as a table.

Reads the payload from --file (a JSON body {"records": [...]}) or takes the first --n rows
of the training data (--data, default $TRAINING_DATA or day1_breast_cancer.csv beside this
script, else scikit-learn's copy of the same data). Writes the table to stdout; nothing to disk.
Imports nothing from this project: it is what any other team's caller would look like.

    python client.py                                   # 3 rows to http://localhost:8000/predict
    python client.py --url http://127.0.0.1:8001 --n 5
    python client.py --file payload.json --api-key "$SCORING_API_KEY"
    python client.py --deployment-name green           # bypass the traffic split, as az ml's --deployment-name
    python client.py --repeat 1000                     # 1,000 requests: answers per deployment, failures by status
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://localhost:8000"
TARGET_COLUMN = "target"
SHOWN_FEATURES = 2  # input columns repeated in the table, to tell the rows apart
# Azure's routing header: sent, it picks the deployment; answered, it names the one that served.
DEPLOYMENT_HEADER = "azureml-model-deployment"
NO_DEPLOYMENT = "-"  # an answer without the header (an endpoint with one implicit deployment)


class ClientError(Exception):
    """An expected failure, with the one line to print; `status` is the HTTP code or what went wrong."""

    def __init__(self, message: str, status: int | str = "error"):
        super().__init__(message)
        self.status = status


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


def post(url: str, payload: Any, api_key: str | None, timeout: float,
         deployment: str | None = None) -> tuple[dict[str, Any], float, str | None]:
    """POST the payload; (decoded answer, seconds, deployment that answered or None).

    Every failure becomes one ClientError line.
    """
    return send(url, encode(payload), request_headers(api_key, deployment), timeout)


def encode(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True).encode("utf-8")


def request_headers(api_key: str | None, deployment: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    return headers


def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[dict[str, Any], float, str | None]:
    """One POST of an encoded body; what post() returns."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            served_by = response.headers.get(DEPLOYMENT_HEADER)
    except urllib.error.HTTPError as exc:
        raise ClientError(f"{url} answered {exc.code} {exc.reason}: {_server_message(exc)}", exc.code) from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise ClientError(f"no answer from {url} within {timeout:g} s (raise --timeout?)", "timeout") from None
        raise ClientError(f"cannot reach {url}: {reason} (is the API running? start it with make serve)",
                          "unreachable") from None
    except (socket.timeout, TimeoutError):
        raise ClientError(f"no answer from {url} within {timeout:g} s (raise --timeout?)", "timeout") from None
    except (ConnectionError, OSError) as exc:
        raise ClientError(f"connection to {url} failed: {exc}", "connection failed") from None
    elapsed = time.perf_counter() - start
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ClientError(f"{url} answered something that is not JSON: is --url the scoring API?", "not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise ClientError(f'{url} answered JSON without "results": is --url the scoring API?', "no results")
    return answer, elapsed, served_by


def _server_message(error: urllib.error.HTTPError) -> str:
    try:
        text = error.read().decode("utf-8", "replace")
    except OSError:
        return "(no body)"
    try:
        answer = json.loads(text)
        detail = answer.get("detail", answer.get("message"))  # FastAPI's key, then Azure's
    except (ValueError, AttributeError):
        detail = None
    if detail is None:
        detail = " ".join(text.split())[:200] or "(no body)"
    elif not isinstance(detail, str):
        detail = json.dumps(detail)[:200]
    if error.code == 404 and detail == "Not Found":  # no such route, not the endpoint's own 404
        detail += " (check --url: the base URL is enough, e.g. http://localhost:8000)"
    return detail


def format_table(answer: dict[str, Any], elapsed: float, deployment: str | None = None) -> str:
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
    served = f" (deployment {deployment})" if deployment else ""
    lines = [f"model {answer.get('model_version', '?')}: {len(results)} prediction(s) in "
             f"{elapsed * 1000:.1f} ms{served}"]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)


class Tally:
    """What many requests got back: answers per deployment (and the versions it served), failures by status."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: Counter[str] = Counter()
        self.versions: dict[str, set[str]] = {}
        self.failures: Counter[str] = Counter()
        self.first_failure: dict[str, str] = {}

    def answered(self, deployment: str | None, version: Any) -> None:
        name = deployment or NO_DEPLOYMENT
        with self.lock:
            self.answers[name] += 1
            self.versions.setdefault(name, set()).add(str(version))

    def failed(self, error: ClientError) -> None:
        status = str(error.status)
        with self.lock:
            self.failures[status] += 1
            self.first_failure.setdefault(status, str(error))


def send_many(url: str, payload: Any, api_key: str | None, timeout: float, deployment: str | None,
              repeat: int, threads: int) -> tuple[Tally, float]:
    """`repeat` POSTs of the same payload from `threads` threads; (tally, seconds). Never raises ClientError."""
    body, headers, tally = encode(payload), request_headers(api_key, deployment), Tally()

    def one(_: int) -> None:
        try:
            answer, _elapsed, served_by = send(url, body, headers, timeout)
        except ClientError as exc:
            tally.failed(exc)
            return
        tally.answered(served_by, answer.get("model_version", "?"))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(repeat)))
    return tally, time.perf_counter() - start


def format_tally(tally: Tally, repeat: int, seconds: float, threads: int) -> str:
    """How many answers came from each deployment (with its share and versions), then failures by status."""
    answered, failed = sum(tally.answers.values()), sum(tally.failures.values())
    lines = [f"{repeat} request(s) in {seconds:.2f} s from {threads} thread(s): {answered} answered, {failed} failed"]
    rows = [("deployment", "answers", "share", "versions")]
    for name in sorted(tally.answers):
        rows.append((name, str(tally.answers[name]), f"{100 * tally.answers[name] / repeat:.1f}%",
                     ",".join(sorted(tally.versions[name]))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]]
        lines.append("  ".join(cells).rstrip())
    for status in sorted(tally.failures):
        lines.append(f"failed ({status}): {tally.failures[status]}, the first: {tally.first_failure[status]}")
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
    parser.add_argument("--deployment-name", default=None,
                        help=f"send the {DEPLOYMENT_HEADER} header: this deployment answers, whatever its share "
                             "of the traffic (default: the endpoint's traffic split decides)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="send the payload this many times and print how many answers came from each "
                             "deployment, and the failures by status (default: %(default)s: print the predictions)")
    parser.add_argument("--threads", type=int, default=4,
                        help="with --repeat, requests in flight at once (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    api_key = args.api_key or os.environ.get("SCORING_API_KEY") or None
    try:
        for flag, value in (("--n", args.n), ("--repeat", args.repeat), ("--threads", args.threads)):
            if value < 1:
                raise ClientError(f"{flag} must be at least 1, got {value}")
        url = predict_url(args.url)
        payload = load_payload(args.file) if args.file is not None else {"records": sample_records(args.n, args.data)}
        if args.file is None and len(payload["records"]) < args.n:
            print(f"note: the data has {len(payload['records'])} rows; sending those (--repeat N sends the "
                  f"request N times)", file=sys.stderr)
        if args.repeat > 1:
            return report_many(url, payload, api_key, args)
        answer, elapsed, served_by = post(url, payload, api_key, args.timeout, args.deployment_name)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(answer, elapsed, served_by))
    return 0


def report_many(url: str, payload: Any, api_key: str | None, args: argparse.Namespace) -> int:
    """--repeat: send, print the tally; 1 (with one line on stderr) when any request failed."""
    threads = min(args.threads, args.repeat)
    tally, seconds = send_many(url, payload, api_key, args.timeout, args.deployment_name, args.repeat, threads)
    print(format_tally(tally, args.repeat, seconds, threads))
    failed = sum(tally.failures.values())
    if failed:
        print(f"error: {failed} of {args.repeat} request(s) failed (see the table above)", file=sys.stderr)
        return 1
    return 0


class _ClosedOk:
    """stdout that, once its reader has gone (`client.py | head -1`), points at os.devnull and goes
    on instead of raising BrokenPipeError (cli.stdout_closed_ok's twin: this file imports nothing of ours)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, name)(*args)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            return len(args[0]) if args else None

    def write(self, text: str) -> int:
        return self._call("write", text)

    def flush(self) -> None:
        self._call("flush")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


if __name__ == "__main__":
    sys.stdout = _ClosedOk(sys.stdout)
    raise SystemExit(main())
