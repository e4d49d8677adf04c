"""Model monitoring of an online deployment: drift, prediction drift and data quality over a window.

Reads the inputs and outputs the data collector kept for one deployment (collector.py's
layout, local $DATA_COLLECTOR_DIR or the blob container with --storage blob) within the
window, and compares them with the reference profile of the model version that answered
(reference_profile.json in the registry). The numbers are monitoring.py's, the same code the
nightly batch's drift uses, so the same rows give the same values.

    python monitor.py --endpoint azureml/online/endpoint.yml --deployment blue --window P1D
    python monitor.py --deployment default --start 2026-11-30T00:00Z --end 2026-12-01T00:00Z --json

Signals and metrics are Azure ML model monitoring's, with its default thresholds:
- data_drift: normalized_wasserstein_distance > 0.1 alerts for a number feature
  (jensen_shannon_distance and population_stability_index reported beside it),
  jensen_shannon_distance > 0.1 for a category feature (population_stability_index and
  pearsons_chi_squared_test reported beside it).
- prediction_drift: the same metrics on the score (the probability of class 1).
- data_quality: null_value_rate, data_type_error_rate, out_of_bounds_rate; a feature
  alerts when its rate is above the training data's own rate (threshold 0 over it; bounds
  are the training min-max, or for a category the training categories).
A distance alerts only beyond sampling noise, as in the batch (monitoring.py's docstring:
the two-sample KS test, or Pearson's chi-squared test for a category, at $DRIFT_ALPHA over
the features; 0 turns the guard off and leaves Azure's plain thresholds). Each signal's
overall row (feature null, metric `alerting_features`) alerts when any feature does.

Prints a table and one summary line per signal (--json: the list of
{signal, feature, metric, value, threshold, status, model_version} objects), and keeps the
result beside the collected data: modelMonitoring/{endpoint}/{deployment}/{run}.json.
Exit codes: 0 done (alerts included), 1 a signal alerts with --fail-on-alert, or no data in
the window with --fail-on-alert (a monitor that saw nothing cannot vouch for the model),
2 a problem (bad window, no profile, storage unreachable) said in one line.

Azure counterpart: a monitor schedule (azureml/monitoring/monitor.yml) over the
deployment's collected production data.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import cli
import collector
import endpoint_spec
import monitoring
import online_traffic
import settings
from online_traffic import SIGNALS, keep_result

log = logging.getLogger("monitor")

# Azure's default for a category feature's Jensen-Shannon distance (numbers: Thresholds.wasserstein, also 0.1).
CATEGORY_DRIFT_THRESHOLD = 0.1
QUALITY_METRICS = ("null_value_rate", "data_type_error_rate", "out_of_bounds_rate")
SCORE_FEATURE = "score"
_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)


class MonitorError(Exception):
    """A window, profile or store the monitor cannot use; the message says what to do."""


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration as Azure's monitor YAML writes them (P7D, PT6H, P1W, P1DT12H)."""
    match = _DURATION.fullmatch(text.strip())
    if not match or not any(match.groups()) or text.strip().upper().endswith("T"):
        raise MonitorError(f"invalid window {text!r}: use an ISO 8601 duration such as P1D, P7D or PT6H")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_instant(text: str, flag: str) -> datetime:
    try:
        return online_traffic.parse_time(text)
    except ValueError:
        raise MonitorError(f"invalid {flag} {text!r}: use an ISO 8601 time such as 2026-11-30T00:00Z") from None


def endpoint_name(path: Path | None) -> str:
    """The endpoint's name from its YAML (`name:`), or the plain endpoint's when there is none."""
    if path is None:
        return collector.LOCAL_ENDPOINT
    try:
        spec = endpoint_spec.read_yaml(path)
    except endpoint_spec.EndpointSpecError as exc:
        raise MonitorError(str(exc)) from None
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or not name:
        raise MonitorError(f"{endpoint_spec.shown(Path(path))}: no endpoint `name:`")
    return name


def endpoint_deployments(path: Path | None, endpoint: str) -> list[str]:
    """The deployments of the endpoint: the names in the YAMLs beside its own whose endpoint_name is
    `endpoint` (the plain endpoint, no YAML: its one deployment, default)."""
    if path is None:
        return [collector.LOCAL_DEPLOYMENT]
    names = []
    for file in sorted({*Path(path).parent.glob("*.yml"), *Path(path).parent.glob("*.yaml")}):
        try:
            data = endpoint_spec.read_yaml(file)
        except endpoint_spec.EndpointSpecError:
            continue
        if isinstance(data, dict) and data.get("endpoint_name") == endpoint and isinstance(data.get("name"), str):
            names.append(data["name"])
    return sorted(names)


def check_deployment(path: Path | None, endpoint: str, deployment: str) -> None:
    """A MonitorError naming the endpoint's deployments when `deployment` is not one of them."""
    known = endpoint_deployments(path, endpoint)
    if deployment not in known:
        where = f"endpoint {endpoint}" if path is not None else f"the plain endpoint {endpoint} (no --endpoint)"
        raise MonitorError(f"--deployment {deployment!r} is not a deployment of {where}; "
                           f"its deployments: {', '.join(known) or 'none'}")


# ----- from collected events to matrices ------------------------------------------------------
def rows_matrix(rows: Sequence[Any], profile: dict) -> tuple[np.ndarray, np.ndarray]:
    """Collected input rows as the monitor's float matrix (model's feature order) and the type-error mask.

    A number feature holds its value; a category feature the index of its category in the
    profile's list, and an unknown category the index past the end (out of bounds, as
    monitoring counts it). A missing or null value is NaN (a null); a value of the wrong type
    (text for a number, a number for a category) is NaN too and marked in the mask (a data
    type error), so it is not also counted as a null.
    """
    features = list(profile["features"])
    codes = [{c: float(k) for k, c in enumerate(profile["columns"][f]["categories"])}
             if profile["columns"][f].get("type") == "category" else None for f in features]
    matrix = np.full((len(rows), len(features)), np.nan)
    errors = np.zeros(matrix.shape, dtype=bool)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors[i, :] = True
            continue
        for j, name in enumerate(features):
            value = row.get(name)
            if value is None:
                continue
            if codes[j] is not None:
                if isinstance(value, str):
                    matrix[i, j] = codes[j].get(value, float(len(codes[j])))
                else:
                    errors[i, j] = True
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                matrix[i, j] = float(value)
            else:
                errors[i, j] = True
    return matrix, errors


def join_events(inputs: list[dict], outputs: list[dict]) -> dict[str, list[tuple[list, list | None]]]:
    """(input rows, output rows or None) per model version, joined by correlationid."""
    by_id = {e.get("correlationid"): e for e in outputs}
    versions: dict[str, list[tuple[list, list | None]]] = {}
    for event in inputs:
        out = by_id.get(event.get("correlationid"))
        rows = event.get("data") or []
        scores = out.get("data") if out and len(out.get("data") or []) == len(rows) else None
        versions.setdefault(str(event.get("modelversion")), []).append((rows, scores))
    return versions


def accumulate(profile: dict, pairs: list[tuple[list, list | None]],
               thresholds: monitoring.Thresholds) -> tuple[monitoring.DriftResult, np.ndarray]:
    """Feed joined requests to monitoring's DriftAccumulator; returns its result and type errors per feature."""
    features = list(profile["features"])
    acc = monitoring.DriftAccumulator(profile, thresholds)
    type_errors = np.zeros(len(features), dtype=np.int64)
    for rows, outs in pairs:
        matrix, errors = rows_matrix(rows, profile)
        type_errors += errors.sum(axis=0)
        scores = None
        if outs is not None:
            scores = np.array([_probability(o) for o in outs], dtype=np.float64)
        acc.update(matrix, scores)
    return acc.result(), type_errors


def _probability(out: Any) -> float:
    value = out.get("probability") if isinstance(out, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


# ----- from monitoring's table to Azure's signals ---------------------------------------------
def signal_rows(result: monitoring.DriftResult, profile: dict, type_errors: np.ndarray,
                version: str) -> list[dict[str, Any]]:
    """The {signal, feature, metric, value, threshold, status} rows of one model version."""
    th = result.thresholds
    features = list(profile["features"])
    out: list[dict[str, Any]] = []
    data_rows = [r for r in result.table if r["signal"] == "data_drift"]
    score_rows = [r for r in result.table if r["signal"] == "prediction_drift"]
    for signal, table, tests in (("data_drift", data_rows, len(features)), ("prediction_drift", score_rows, 1)):
        for row in table:
            out += drift_rows(signal, row, th, tests, version)
    for i, row in enumerate(data_rows):
        ref = profile["columns"][row["feature"]]
        cells = result.rows
        rates = {
            "null_value_rate": (row["null_value_rate"] - (type_errors[i] / cells if cells else 0.0),
                                float(ref.get("null_rate") or 0.0)),
            "data_type_error_rate": (type_errors[i] / cells if cells else math.nan, 0.0),
            "out_of_bounds_rate": (row["out_of_bounds_rate"], 0.0),
        }
        for metric in QUALITY_METRICS:
            value, threshold = rates[metric]
            status = "alert" if not math.isnan(value) and value > threshold + 1e-12 else "ok"
            out.append(_row("data_quality", row["feature"], metric, value, threshold, status, version))
    return out


def drift_rows(signal: str, row: dict[str, Any], th: monitoring.Thresholds, tests: int,
               version: str) -> list[dict[str, Any]]:
    """One feature's drift rows: Azure's thresholded metric (normalized Wasserstein for a number,
    Jensen-Shannon for a category) and the metrics reported beside it."""
    category = row.get("type") == "category"
    pvalue = row["pearsons_chi_squared_test"] if category else row["ks_pvalue"]
    main = "jensen_shannon_distance" if category else "normalized_wasserstein_distance"
    limit = CATEGORY_DRIFT_THRESHOLD if category else th.wasserstein
    value = row[main]
    status = "alert" if th.significant(pvalue, tests) and not math.isnan(value) and value > limit else "ok"
    reported = (["population_stability_index", "pearsons_chi_squared_test"] if category
                else ["jensen_shannon_distance", "population_stability_index"])
    feature = row["feature"]
    return ([_row(signal, feature, main, value, limit, status, version)]
            + [_row(signal, feature, m, row.get(m, math.nan), None, None, version) for m in reported])


def overall_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per signal and model version: how many features alert (status alert when any)."""
    found: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        key = (r["signal"], r["model_version"])
        found.setdefault(key, set())
        if r["status"] == "alert":
            found[key].add(r["feature"])
    return [_row(signal, None, "alerting_features", len(alerting), 0, "alert" if alerting else "ok", version)
            for (signal, version), alerting in found.items()]


def _row(signal: str, feature: str | None, metric: str, value: Any, threshold: float | None,
         status: str | None, version: str) -> dict[str, Any]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number: float | int | None = int(value)
    else:
        number = None if value is None or math.isnan(float(value)) else float(value)
    return {"signal": signal, "feature": feature, "metric": metric, "value": number,
            "threshold": threshold, "status": status, "model_version": version}


# ----- the run ---------------------------------------------------------------------------
def run_monitor(store: collector.LocalSink | collector.BlobSink, endpoint: str, deployment: str,
                start: datetime, end: datetime, registry_dir: Path | None,
                thresholds: monitoring.Thresholds) -> dict[str, Any]:
    """Read the window, compare each model version with its profile; the result (not yet kept)."""
    inputs, bad_in = online_traffic.read_events(store, endpoint, deployment, collector.INPUTS, start, end)
    outputs, bad_out = online_traffic.read_events(store, endpoint, deployment, collector.OUTPUTS, start, end)
    result: dict[str, Any] = {
        "endpoint": endpoint, "deployment": deployment,
        "window_start": _iso(start), "window_end": _iso(end), "run_at": _iso(datetime.now(timezone.utc)),
        "requests": len(inputs), "records": sum(len(e.get("data") or []) for e in inputs),
        "unreadable_lines": bad_in + bad_out, "model_versions": [], "signals": [],
    }
    rows: list[dict[str, Any]] = []
    for version, pairs in sorted(join_events(inputs, outputs).items()):
        profile = load_version_profile(registry_dir, version)
        drift, type_errors = accumulate(profile, pairs, thresholds)
        rows += signal_rows(drift, profile, type_errors, version)
        result["model_versions"].append({"model_version": version, "requests": len(pairs), "records": drift.rows})
    result["signals"] = overall_rows(rows) + rows
    result["status"] = {s: status_of(result["signals"], s) for s in SIGNALS}
    return result


def load_version_profile(registry_dir: Path | None, version: str) -> dict:
    profile = monitoring.load_reference_profile(registry_dir, version)
    if profile is None:
        raise MonitorError(f"cannot monitor model version {version}: it has no usable reference profile "
                           "(see the warning above)")
    return profile


def status_of(rows: list[dict[str, Any]], signal: str) -> str | None:
    """alert when any row of the signal alerts, ok when it has rows, None when it has none."""
    statuses = [r["status"] for r in rows if r["signal"] == signal and r["feature"] is None]
    return None if not statuses else "alert" if "alert" in statuses else "ok"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ----- output ----------------------------------------------------------------------------
TABLE_COLUMNS = [("signal", "signal", ""), ("feature", "feature", ""), ("metric", "metric", ""),
                 ("value", "value", ".4g"), ("threshold", "threshold", ".4g"), ("status", "status", ""),
                 ("model_version", "model", "")]


def format_table(rows: list[dict[str, Any]]) -> str:
    shown = [{k: "-" if v is None else v for k, v in r.items()} for r in rows]
    return cli.format_table(shown, TABLE_COLUMNS)


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One line per signal: its status, how many features alert and the worst of them."""
    lines = []
    for signal in SIGNALS:
        status = result["status"].get(signal)
        if status is None:
            lines.append(f"{signal}: no data")
            continue
        alerting = [r for r in result["signals"] if r["signal"] == signal and r["feature"] and r["status"] == "alert"]
        total = len({(r["feature"], r["model_version"]) for r in result["signals"]
                     if r["signal"] == signal and r["feature"]})
        worst = sorted(alerting, key=lambda r: -(r["value"] or 0))[:3]
        named = ", ".join(f"{r['feature']} {r['metric']} {r['value']:.3g}" for r in worst)
        lines.append(f"{signal}: {status} ({len({r['feature'] for r in alerting})} of {total} features alert"
                     + (f": {named})" if named else ")"))
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Monitor an online deployment's collected traffic against "
                                     "its model's reference profile.", formatter_class=settings.HelpFormatter)
    parser.add_argument("--endpoint", type=Path, default=None,
                        help=f"the endpoint YAML (default: the plain endpoint, {collector.LOCAL_ENDPOINT})")
    parser.add_argument("--deployment", default=collector.LOCAL_DEPLOYMENT, help="the deployment to monitor")
    parser.add_argument("--window", default="P1D", help="ISO 8601 duration ending at --end (or now)")
    parser.add_argument("--start", default=None, help="window start, ISO 8601 (instead of --window)")
    parser.add_argument("--end", default=None, help="window end, ISO 8601 (default: now)")
    cli.add_storage_option(parser, help_text="where the collected data is: local ($DATA_COLLECTOR_DIR, else "
                           "collected/) or blob (default: $STORAGE_BACKEND, else local)")
    cli.add_registry_options(parser, model_version=False)
    parser.add_argument("--json", action="store_true", help="print the signal rows as JSON")
    parser.add_argument("--fail-on-alert", action="store_true",
                        help="exit 1 when a signal alerts or when the window holds no data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging()
    try:
        end = parse_instant(args.end, "--end") if args.end else datetime.now(timezone.utc)
        start = parse_instant(args.start, "--start") if args.start else end - parse_duration(args.window)
        if start >= end:
            raise MonitorError(f"the window is empty: --start {_iso(start)} is not before --end {_iso(end)}")
        endpoint = endpoint_name(args.endpoint)
        check_deployment(args.endpoint, endpoint, args.deployment)
        store = collector.get_sink(args.storage)
        thresholds = monitoring.Thresholds.from_env()
        result = run_monitor(store, endpoint, args.deployment, start, end, args.registry_dir, thresholds)
        if result["requests"] == 0:
            print(f"no collected data for {endpoint}/{args.deployment} from {_iso(start)} to {_iso(end)} "
                  f"in {store.location()}: nothing to monitor")
            return 1 if args.fail_on_alert else 0
        kept = keep_result(store, result)
    except (MonitorError, collector.CollectorError, monitoring.MonitoringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # storage unreachable and the like: one line, not a traceback
        print(f"error: cannot monitor {args.deployment}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result["signals"], indent=1))
    else:
        print(format_table(result["signals"]))
        print(f"\n{endpoint}/{args.deployment}, {_iso(start)} to {_iso(end)}: {_count(result['requests'], 'request')}, "
              f"{_count(result['records'], 'record')}; result kept as {store.location().rstrip('/')}/{kept}")
        print("\n".join(summary_lines(result)))
    alerting = "alert" in result["status"].values()
    return 1 if args.fail_on_alert and alerting else 0


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
