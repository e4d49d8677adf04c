"""cli.py: the shared options, dates, date ranges and text tables of the stage scripts."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

import pytest

import cli

D = dt.date


def test_parse_date_accepts_only_yyyy_mm_dd():
    assert cli.parse_date("2026-11-26") == D(2026, 11, 26)
    with pytest.raises(cli.UsageError, match=r"^invalid date '2026-1-5': expected YYYY-MM-DD, for example 2026-11-26$"):
        cli.parse_date("2026-1-5")
    with pytest.raises(cli.UsageError, match=r"^invalid date '2026-02-30': day is out of range for month$"):
        cli.parse_date("2026-02-30")


def test_days_between_and_its_limits():
    assert cli.days_between(D(2026, 11, 30), D(2026, 12, 2)) == [D(2026, 11, 30), D(2026, 12, 1), D(2026, 12, 2)]
    with pytest.raises(cli.UsageError, match=r"^--end 2026-11-01 is before --start 2026-11-02$"):
        cli.days_between(D(2026, 11, 2), D(2026, 11, 1))
    with pytest.raises(cli.UsageError, match=r"^a backfill covers at most 3 days$"):
        cli.days_between(D(2026, 11, 1), D(2026, 11, 4), max_days=3)


@pytest.mark.parametrize("date, start, end, expected", [
    (None, None, None, [D(2026, 1, 2)]),
    ("2026-11-26", None, None, [D(2026, 11, 26)]),
    (None, "2026-11-25", "2026-11-26", [D(2026, 11, 25), D(2026, 11, 26)]),
    ("2026-11-26", "2026-11-25", None, "give either --date or --start/--end, not both"),
    (None, "2026-11-25", None, "--start and --end go together"),
    ("", None, None, "invalid date ''"),
])
def test_parse_days(date, start, end, expected):
    if isinstance(expected, str):
        with pytest.raises(cli.UsageError) as info:
            cli.parse_days(date, start, end, today=D(2026, 1, 2))
        assert str(info.value).startswith(expected)
    else:
        assert cli.parse_days(date, start, end, today=D(2026, 1, 2)) == expected


def test_parse_date_range_has_open_ends():
    assert cli.parse_date_range(None, None) == (None, None)
    assert cli.parse_date_range("2026-11-25", None) == (D(2026, 11, 25), None)
    with pytest.raises(cli.UsageError, match="--end 2026-11-24 is before --start 2026-11-25"):
        cli.parse_date_range("2026-11-25", "2026-11-24")


def test_shared_options():
    parser = argparse.ArgumentParser()
    cli.add_registry_options(parser)
    cli.add_storage_option(parser)
    cli.add_date_options(parser)
    args = parser.parse_args(["--registry-dir", "r", "--storage", "blob", "--start", "2026-11-25"])
    assert (args.registry_dir, args.model_version, args.storage, args.date, args.start, args.end) == (
        Path("r"), "latest", "blob", None, "2026-11-25", None)
    bare = cli.add_registry_options(argparse.ArgumentParser(), model_version=False).parse_args([])
    assert vars(bare) == {"registry_dir": None}


def test_format_table_aligns_numbers_right_and_text_left():
    rows = [{"name": "a", "n": 3, "share": 0.25, "ok": True}, {"name": "bbb", "n": 12, "share": float("nan"), "ok": False}]
    text = cli.format_table(rows, (("name", "name", ""), ("n", "count", ""), ("share", "share", ".1%"), ("ok", "ok", "")))
    assert text.splitlines() == [
        "name  count  share  ok",
        "a         3  25.0%  True",
        "bbb      12      -  False",
    ]
    assert cli.format_table([], (("a", "alpha", ""),)) == "alpha"


STAGE_SCRIPTS = ("score.py", "analyze_predictions.py", "monitor.py", "generate_raw_data.py", "pipeline_run_batch.py",
                 "registry.py", "batch_score.py", "endpoint.py", "train.py", "export_data.py")


@pytest.mark.parametrize("script", STAGE_SCRIPTS)
def test_every_stage_script_survives_a_closed_stdout(script):
    from conftest import ROOT

    tail = (ROOT / script).read_text().split('if __name__ == "__main__":\n', 1)[1]
    assert tail == "    cli.stdout_closed_ok()\n    raise SystemExit(main())\n"


def test_stdout_closed_ok_sends_the_rest_to_devnull(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import cli, sys\ncli.stdout_closed_ok()\nfor i in range(3):\n    print(i)\n"
            "sys.stderr.write('went on\\n')\nraise SystemExit(3)\n")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-u", "-c", code], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (3, "went on\n")
