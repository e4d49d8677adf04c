"""Rewrite the README's `make demo` excerpt from a real run of scripts/demo.sh.

Reads: the output of `bash scripts/demo.sh`, run in a fresh temporary copy of the working tree
(so the registry starts empty and no machine path leaks in), or a captured transcript given with
--transcript. Writes: README.md between the `<!-- demo:start -->` and `<!-- demo:end -->`
markers (atomically), keeping each stage heading and its first few lines. `make readme-demo`
runs this.

    python scripts/readme_demo.py                      # run the demo, then rewrite the excerpt
    python scripts/readme_demo.py --transcript out.txt # rewrite it from a captured run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- demo:start -->", "<!-- demo:end -->"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADING = re.compile(r"^== (.+?)  \(Azure: (.+)\)  \[\d+s\]$")
# Lines kept wherever they appear in a stage, beyond its first lines: the first scored record,
# each registered version, the client's answer, the drifted day, the run summary, the trend
# table of the analysis, where the report went, the demo's own closing line.
KEEP = re.compile("|".join([
    r"^\s+0\s+[01]\s+[\d.]+$", r"^v\d{3} ", r"prediction\(s\) in", r"drift alert", r"runs succeeded",
    r"^Trend$", r"^date\s+rows\s+mean_score", r"^\d{4}-\d\d-\d\d\s.*\s(ok|warn|alert)\s",
    r"^HTML report", r"^demo finished",
]))
# Settings the scripts read from the environment: unset, so the copy uses its own folders.
ENV_PATHS = ("LOCAL_REGISTRY_DIR", "ARTIFACTS_DIR", "RAW_DIR", "CURATED_DIR", "LOGS_DIR",
             "REPORTS_DIR", "TRAINING_DATA", "MLFLOW_TRACKING_URI", "STORAGE_BACKEND",
             "SCORING_API_KEY", "MODEL_VERSION", "AZUREML_MODEL_DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Rewrite the README's demo excerpt from a real run of scripts/demo.sh.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--transcript", type=Path,
                        help="a captured demo output to use instead of running the demo")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="file to rewrite")
    parser.add_argument("--lines", type=int, default=2, help="output lines kept after each heading")
    parser.add_argument("--width", type=int, default=100, help="longer lines are cut to this width")
    parser.add_argument("--save-transcript", type=Path,
                        help="also write the full cleaned output of the run here")
    return parser


def stage_headings(demo_sh: Path) -> list[str]:
    """The `== title  (Azure: service)` headings demo.sh prints, in order, without timings."""
    stages = re.findall(r'^stage "([^"]+)" "([^"]+)"', demo_sh.read_text(encoding="utf-8"), re.M)
    return [f"== {title}  (Azure: {azure})" for title, azure in stages]


def run_demo() -> str:
    """Run scripts/demo.sh in a temporary copy of the working tree; its output, paths relative."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    with tempfile.TemporaryDirectory(prefix="readme-demo-") as tmp:
        copy = Path(tmp) / "repo"
        for name in filter(None, files):
            source = ROOT / name
            if source.is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, copy / name)
        (copy / ".venv").symlink_to(ROOT / ".venv")
        env = {k: v for k, v in os.environ.items() if k not in ENV_PATHS}
        run = subprocess.run(["bash", "scripts/demo.sh"], cwd=copy, env=env,
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout[-2000:] + run.stderr[-2000:])
            raise RuntimeError(f"scripts/demo.sh exited {run.returncode}: the excerpt was not rewritten")
        return clean(run.stdout, copy)


def clean(text: str, root: Path | None = None) -> str:
    """Drop colour codes and the run's own folder (paths become relative to the repository)."""
    text = ANSI.sub("", text)
    for base in filter(None, (root, ROOT)):
        text = text.replace(f"{base}/", "").replace(str(base), ".")
    return text


def excerpt(transcript: str, lines: int = 2, width: int = 100) -> str:
    """Each stage heading with its first `lines` output lines, plus the KEEP lines after them."""
    out: list[str] = []
    taken, skipped = 0, False
    for line in transcript.splitlines():
        line = line.rstrip()
        if HEADING.match(line):
            out += ["", line] if out else [line]
            taken, skipped = 0, False
        elif not out or not line or line.startswith("INFO "):
            continue
        elif taken < lines or KEEP.search(line):
            if skipped:
                out.append("...")
            out.append(line if len(line) <= width else line[: width - 4] + " ...")
            taken, skipped = taken + 1, False
        else:
            skipped = True
    return "\n".join(out)


def rewrite(readme: Path, block: str) -> None:
    """Put `block` between the demo markers of `readme`, written atomically."""
    text = readme.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"{readme}: expected one {START} and one {END} marker")
    head, rest = text.split(START)
    tail = rest.split(END)[1]
    new = f"{head}{START}\n```console\n$ make demo\n{block}\n```\n{END}{tail}"
    temp = readme.with_name(f".{readme.name}.tmp")
    temp.write_text(new, encoding="utf-8")
    os.replace(temp, readme)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        raw = args.transcript.read_text(encoding="utf-8") if args.transcript else run_demo()
        transcript = clean(raw)
        if args.save_transcript:
            args.save_transcript.write_text(transcript, encoding="utf-8")
        block = excerpt(transcript, args.lines, args.width)
        found = [HEADING.match(l).expand(r"== \1  (Azure: \2)") for l in block.splitlines() if HEADING.match(l)]
        if found != stage_headings(ROOT / "scripts" / "demo.sh"):
            raise ValueError("the transcript's stage headings differ from scripts/demo.sh: run the demo again")
        rewrite(args.readme, block)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rewrote the demo excerpt in {args.readme.name} ({len(block.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
