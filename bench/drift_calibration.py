"""How often clean and drifted days of a given size raise the drift levels (a calibration, not a test).

Trains one version in a temporary registry (no MLflow), generates many days with
generate_raw_data's sampler (clean, then shifted by --drift standard deviations on its default
drift features), runs monitoring's accumulator on each day, and prints, per scenario, how many
days the raw distances alone would flag and how many the monitor flags.

    .venv/bin/python bench/drift_calibration.py --rows 200 --days 100
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import generate_raw_data  # noqa: E402
import monitoring  # noqa: E402
import train  # noqa: E402
from registry import Registry  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=200, help="rows per day")
    parser.add_argument("--days", type=int, default=100, help="days per scenario")
    parser.add_argument("--drift", type=float, nargs="+", default=[0.25, 0.5, 1.5],
                        help="shifts to try, in standard deviations")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = train.train(registry_dir=Path(tmp) / "registry", artifacts_dir=Path(tmp) / "artifacts",
                             use_mlflow=False)
        profile = monitoring.load_profile(Registry(Path(tmp) / "registry").get(result.version.version).path)
    features = profile["features"]
    source = generate_raw_data.load_source()
    print(f"{args.days} days of {args.rows} rows per scenario; reference: {profile['row_count']} training rows, "
          f"{len(features)} features, {profile['bins']} quantile bins")
    header = ("scenario", "median max PSI", "days max PSI>=0.1", "days max NWD>=0.1", "warn days", "alert days")
    print("  ".join(f"{h:>18}" for h in header))
    for drift in [0.0, *args.drift]:
        max_psi, max_nwd, warns, alerts = [], [], 0, 0
        for i in range(args.days):
            day = dt.date(2030, 1, 1) + dt.timedelta(days=i)
            table = next(generate_raw_data.generate_chunks(source, day, args.rows, drift=drift))
            matrix = np.column_stack([table.column(name).to_numpy() for name in features]).astype(np.float64)
            acc = monitoring.DriftAccumulator(profile)
            acc.update(matrix)
            summary = acc.result().summary
            max_psi.append(summary["max_psi"])
            max_nwd.append(summary["max_normalized_wasserstein"])
            warns += summary["drift_warn"]
            alerts += summary["drift_flag"]
        name = "clean" if drift == 0 else f"drift {drift:g} std"
        cells = (name, f"{np.median(max_psi):.3f}", sum(p >= 0.1 for p in max_psi), sum(n >= 0.1 for n in max_nwd),
                 warns, alerts)
        print("  ".join(f"{str(c):>18}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
