"""The docs stay true: README.md and docs/*.md against the scripts, the Makefile and the code.

Every shown command's flags exist, every linked file exists, every `make TARGET` exists, the
README names every stage script, its demo excerpt has the headings scripts/demo.sh prints, and
docs/architecture.md's module diagram is the import graph of the code.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_script

README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = {path: path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
PAGE_IDS = [str(p.relative_to(ROOT)) for p in PAGES]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
MODULES = sorted(p.name for p in ROOT.glob("*.py"))
CLI_SCRIPTS = [name for name in MODULES if "def main(" in (ROOT / name).read_text(encoding="utf-8")]
MAKE_TARGETS = set(re.findall(r"^([a-zA-Z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
DEMO_START, DEMO_END = "<!-- demo:start -->", "<!-- demo:end -->"


def names(text: str, filename: str) -> bool:
    """Whether `filename` occurs in `text` as a whole name (score.py is not inside batch_score.py)."""
    return re.search(rf"(?<![\w./-]){re.escape(filename)}(?![\w-])", text) is not None


def code_of(text: str) -> str:
    """The fenced code blocks and inline code spans of a Markdown page, one per line."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return "\n".join(blocks + re.findall(r"`([^`\n]+)`", prose))


def shown_commands(text: str) -> list[tuple[str, set[str]]]:
    """(script path and subcommand, flags) of every `python X.py ...` or `.venv/bin/python X.py ...` in a page's code.

    The subcommand is the first word after the script (`registry.py list`), or "" when a flag or nothing comes first.
    """
    found = []
    for line in code_of(text).splitlines():
        for match in re.finditer(r"(?<![\w-])(?:\.venv/bin/)?python3?\s+([\w./-]+\.py)([^|;>`\n]*)", line):
            rest = match.group(2)
            sub = re.match(r"\s+([a-z][\w-]*)(?=\s|$)", rest)
            flags = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", rest))
            found.append((match.group(1) + (f" {sub.group(1)}" if sub else ""), flags))
    return found


@functools.lru_cache(maxsize=None)
def help_of(script: str, subcommand: str = "") -> subprocess.CompletedProcess:
    """`python SCRIPT [SUBCOMMAND] --help`, run once per script (and subcommand) for the whole module."""
    return run_script(script, *([subcommand] if subcommand else []), "--help", timeout=120)


def flags_in_help(script: str, subcommand: str = "") -> set[str]:
    """The flags `--help` lists: the script's own, and a subcommand's when the script has that subcommand."""
    run = help_of(script)
    assert run.returncode == 0, f"{script} --help: {run.stderr}"
    flags = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", run.stdout))
    choices = re.search(r"\{([\w,-]+)\}", run.stdout)
    if subcommand and choices and subcommand in choices.group(1).split(","):
        sub = help_of(script, subcommand)
        assert sub.returncode == 0, f"{script} {subcommand} --help: {sub.stderr}"
        flags |= set(re.findall(r"(?<![\w-])--[a-z][\w-]*", sub.stdout))
    return flags


def relative_links(page: Path, text: str) -> list[str]:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    return [link for link in links if not re.match(r"^[a-z]+:", link)]


def demo_excerpt() -> str:
    assert README.count(DEMO_START) == 1 and README.count(DEMO_END) == 1
    return README.split(DEMO_START, 1)[1].split(DEMO_END, 1)[0]


# ----- scripts and their --help ---------------------------------------------------------------
def test_there_are_scripts():
    assert {"train.py", "score.py", "registry.py", "export_data.py", "batch_score.py"} <= set(CLI_SCRIPTS)


def test_names_matches_whole_names_only():
    assert names("run `batch_score.py` nightly", "batch_score.py")
    assert not names("run `batch_score.py` nightly", "score.py")
    assert not names("see bench/bench_batch.py", "bench_batch.py")
    assert names("[score.py](score.py), then", "score.py")


@pytest.mark.parametrize("script", CLI_SCRIPTS)
def test_readme_names_every_stage_script(script):
    assert names(README, script), f"README.md does not name {script}"


@pytest.mark.parametrize("module", MODULES)
def test_architecture_names_every_module(module):
    assert names(ARCHITECTURE, module), f"docs/architecture.md does not name {module}: say which layer it is in and what it owns"


@pytest.mark.parametrize("script", CLI_SCRIPTS)
def test_every_help_exits_zero(script):
    run = help_of(script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:")
    assert "(default: None)" not in run.stdout
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", run.stdout), "a default is shown twice"


def test_shown_commands_are_found():
    commands = {command.split()[0] for text in PAGES.values() for command, _ in shown_commands(text)}
    assert {"train.py", "score.py", "pipeline_run_batch.py", "client.py"} <= commands
    assert shown_commands("```console\n$ .venv/bin/python train.py --random-state 3 >/dev/null  # --no\n```\n") == [
        ("train.py", {"--random-state"})]
    assert shown_commands("`python app_score_api.py --port 8000 [--workers N]`, or python x.py --no") == [
        ("app_score_api.py", {"--port", "--workers"})]
    assert shown_commands('`python endpoint.py update --traffic "blue=0 green=100"`') == [
        ("endpoint.py update", {"--traffic"})]


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_flag_shown_exists_in_the_scripts_help(page):
    wrong = []
    for command, flags in shown_commands(PAGES[page]):
        script, _, subcommand = command.partition(" ")
        if not (ROOT / script).is_file():
            wrong.append(f"{script}: no such script")
            continue
        wrong += [f"{command} {flag}" for flag in sorted(flags - flags_in_help(script, subcommand))]
    assert not wrong, f"{page.name} shows flags that --help does not list: {wrong}"


def test_drift_threshold_table_names_real_flags():
    table = (ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8")
    flags = set(re.findall(r"^\| `(--[a-z-]+)` \|", table, re.M))
    assert len(flags) == 4
    assert flags <= flags_in_help("pipeline_run_batch.py")


# ----- links, make targets, request bodies ----------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_linked_files_exist(page):
    links = relative_links(page, PAGES[page])
    missing = [link for link in links if not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_anchors_of_links_to_pages_exist(page):
    wrong = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)#([^)\s]+)\)", PAGES[page]):
        text = (page.parent / target).read_text(encoding="utf-8")
        if anchor not in {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}:
            wrong.append(f"{target}#{anchor}")
    assert not wrong, f"{page.name} links to headings that do not exist: {wrong}"


def test_readme_links_every_docs_page():
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    linked = {Path(link).name for link in relative_links(ROOT / "README.md", README) if link.startswith("docs/")}
    assert pages <= linked, f"README.md does not link {sorted(pages - linked)}"


def test_every_docs_page_opens_with_what_it_covers():
    for page in (ROOT / "docs").glob("*.md"):
        title, blank, first = page.read_text(encoding="utf-8").split("\n")[:3]
        assert title.startswith("# ") and blank == "" and first and not first.startswith(("#", "`", "|", "!")), page.name


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_make_targets_named_exist(page):
    named = set(re.findall(r"(?<![\w-])make ([a-z][\w-]*)", code_of(PAGES[page])))
    assert not named - MAKE_TARGETS, f"{page.name} names make targets that do not exist: {named - MAKE_TARGETS}"


def test_readme_names_demo_and_test():
    assert {"demo", "test"} <= set(re.findall(r"(?<![\w-])make ([a-z][\w-]*)", code_of(README)))


def test_curl_request_files_exist():
    """Every body a curl example sends (-d @FILE) ships with the repo."""
    payloads = {p for text in PAGES.values() for p in re.findall(r"-d @([\w./-]+)", text)}
    assert {"examples/one_record.json", "examples/worst_area_infinity.json"} <= payloads
    assert not [p for p in payloads if not (ROOT / p).is_file()]


def test_example_payloads_score_as_documented(service):
    good = json.loads((ROOT / "examples" / "one_record.json").read_text())
    assert len(service.score_payload(good)["results"]) == 1
    bad = json.loads((ROOT / "examples" / "worst_area_infinity.json").read_text())
    with pytest.raises(ValueError, match="record 0, feature 'worst area': expected a finite number, got Infinity"):
        service.score_payload(bad)


# ----- the README's shape and its demo excerpt --------------------------------------------------
def test_readme_stays_short():
    size = len(README.encode("utf-8"))  # what `wc -c README.md` counts
    assert size <= 12_000, f"README.md is {size} bytes; move detail to a docs/ page"


def test_quick_start_comes_first_with_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make \w+", quick, re.M)
    assert commands[:2] == ["make demo", "make test"]


def test_make_help_lists_documented_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = re.findall(r"^\s+([\w-]+)\s", re.sub(r"\x1b\[[0-9;]*m", "", out), re.M)
    assert {"help", "demo", "test", "install", "readme-demo"} <= set(listed)


def test_readme_demo_excerpt_has_the_stage_headings_demo_sh_prints():
    stages = re.findall(r'^stage "([^"]+)" "([^"]+)"', (ROOT / "scripts" / "demo.sh").read_text(), re.M)
    assert len(stages) >= 9
    expected = [f"== {title}  (Azure: {azure})" for title, azure in stages]
    shown = [re.sub(r"  \[\d+s\]$", "", line) for line in demo_excerpt().splitlines() if line.startswith("== ")]
    assert shown == expected, "the README's demo excerpt is stale: run make readme-demo"


def test_readme_demo_excerpt_is_clean():
    text = demo_excerpt()
    assert "\x1b" not in text and "/tmp/" not in text and str(ROOT) not in text
    assert re.search(r"^demo finished in \d+s", text, re.M)


def test_readme_demo_script_cuts_a_transcript(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import readme_demo
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    copy = tmp_path / "copy"
    transcript = (f"\n\x1b[1m== 1. Export  (Azure: a data asset)  [0s]\x1b[0m\nwrote 9 rows to {copy}/day1.csv\n"
                  "INFO train: skipped\nsecond\nthird\n3 of 3 runs succeeded; log: x\n"
                  "\n\x1b[1m== 2. Train  (Azure: a job)  [2s]\x1b[0m\n" + "x" * 120 + "\n")
    assert readme_demo.excerpt(readme_demo.clean(transcript, copy), lines=2, width=100) == "\n".join([
        "== 1. Export  (Azure: a data asset)  [0s]", "wrote 9 rows to day1.csv", "second", "...",
        "3 of 3 runs succeeded; log: x", "", "== 2. Train  (Azure: a job)  [2s]", "x" * 96 + " ..."])
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{DEMO_START}\nold\n{DEMO_END}\nbottom\n")
    readme_demo.rewrite(readme, "new")
    assert readme.read_text() == f"top\n{DEMO_START}\n```console\n$ make demo\nnew\n```\n{DEMO_END}\nbottom\n"


# ----- docs/architecture.md: the module diagram is the import graph -------------------------------
def project_imports() -> dict[str, set[str]]:
    """Each top-level module and the project modules it imports (anywhere in the file)."""
    modules = {Path(name).stem for name in MODULES}
    graph = {}
    for name in modules:
        deps = set()
        for node in ast.walk(ast.parse((ROOT / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                deps.add(node.module.split(".")[0])
        graph[name] = (deps & modules) - {name}
    return graph


def architecture_diagram() -> tuple[set[str], set[tuple[str, str]]]:
    block = ARCHITECTURE.split("<!-- modules:start -->", 1)[1].split("<!-- modules:end -->", 1)[0]
    nodes = set(re.findall(r'^\s*(\w+)\["(\w+)\.py"\]', block, re.M))
    edges = {(source, target.strip()) for source, targets in re.findall(r"^\s*(\w+)\s*-->\s*(.+)$", block, re.M)
             for target in targets.split("&")}
    assert all(node == label for node, label in nodes), "a module's node id is its file name without .py"
    return {node for node, _ in nodes}, edges


def test_architecture_diagram_shows_every_module_and_every_import():
    graph = project_imports()
    nodes, edges = architecture_diagram()
    assert nodes == set(graph), f"modules missing from the diagram: {sorted(set(graph) - nodes)}; " \
                                f"in it but gone: {sorted(nodes - set(graph))}"
    actual = {(source, target) for source, targets in graph.items() for target in targets}
    assert edges == actual, (f"imports the diagram lacks: {sorted(actual - edges)}; "
                             f"arrows with no import behind them: {sorted(edges - actual)}")


def test_imports_point_one_way():
    """Helpers import no stage script (the scorer's ModelService aside); client.py imports nothing of ours."""
    graph = project_imports()
    stages = {"export_data", "train", "app_score_api", "client", "generate_raw_data", "batch_score",
              "pipeline_run_batch", "analyze_predictions", "endpoint", "monitor", "spark_engine"}
    assert graph["client"] == set()
    assert not graph["score"] & stages, "score.py imports helpers only"
    upward = {f"{name} -> {dep}" for name, deps in graph.items() if name not in stages | {"score"}
              for dep in deps & stages}
    assert not upward, f"helpers importing stage scripts: {sorted(upward)}"


def test_mermaid_labels_with_parentheses_are_quoted():
    """Mermaid rejects an unquoted node label holding parentheses (`make diagrams` renders them)."""
    def leftover(line: str) -> str:
        line = re.sub(r'"[^"]*"', "", line)
        return re.sub(r"\[\(|\)\]|\(\(|\)\)", "", line)

    assert "(" in leftover('A[Blob (raw)]') and leftover('A[("raw/")]') == "A"
    diagrams = (ROOT / "architecture_diagram.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```mermaid\n(.*?)```", diagrams, re.S)
    assert len(blocks) == 3
    blocks += re.findall(r"```mermaid\n(.*?)```", ARCHITECTURE, re.S)
    unquoted = [line.strip() for block in blocks if block.startswith("flowchart")
                for line in block.splitlines() if re.search(r"[()]", leftover(line))]
    assert not unquoted, unquoted
    rendered = sorted(p.name for p in (ROOT / "docs" / "diagrams").glob("diagram-*.png"))
    assert rendered == ["diagram-1.png", "diagram-2.png", "diagram-3.png"]


def test_endpoint_updates_shown_are_accepted(tmp_path, trained_registry):
    """Each page's `endpoint.py update` commands, run in order on a fresh state, are accepted."""
    import shlex

    ran = 0
    for page, text in PAGES.items():
        state = tmp_path / page.stem
        for line in re.findall(r"python endpoint\.py update [^`\n]*", text):
            args = shlex.split(line)[1:]
            run = run_script(*args, "--state-dir", str(state), env={"LOCAL_REGISTRY_DIR": str(trained_registry)})
            assert run.returncode == 0, f"{page.name}: {line}: {run.stderr}"
            ran += 1
    assert ran >= 2


def test_stages_outputs_are_those_of_a_real_run(tmp_path, trained_registry):
    """docs/stages.md's score.py probability and curated rows, as make demo's two trainings produce them."""
    stages = (ROOT / "docs" / "stages.md").read_text(encoding="utf-8")
    env = {"LOCAL_REGISTRY_DIR": str(trained_registry), "RAW_DIR": str(tmp_path / "raw"),
           "CURATED_DIR": str(tmp_path / "curated"), "LOGS_DIR": str(tmp_path / "logs")}
    scored = run_script("score.py", "--sample", "1", env=env)
    assert scored.returncode == 0, scored.stderr
    (probability,) = [line.strip() for line in scored.stdout.splitlines() if '"probability"' in line]
    assert probability in stages
    for argv in (["--start", "2026-11-24", "--end", "2026-11-25"], ["--date", "2026-11-26", "--drift", "1.0"]):
        assert run_script("generate_raw_data.py", *argv, env=env).returncode == 0
    assert run_script("pipeline_run_batch.py", "--start", "2026-11-24", "--end", "2026-11-26", env=env).returncode == 0
    with open(tmp_path / "curated" / "predictions_20261126.csv", encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split(",") for _, line in zip(range(4), handle)]
    shown = "\n".join(",".join([*r[:3], "...", *r[-3:]]) for r in rows)
    assert f"```\n{shown}\n```" in stages


def test_make_serve_takes_host_and_port():
    def serve(*overrides: str) -> str:
        # Under `make test` the parent make's MAKEFLAGS/MAKELEVEL would add "Leaving directory" lines.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        done = subprocess.run(["make", "--no-print-directory", "-n", "serve", *overrides], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]

    assert serve() == ".venv/bin/python app_score_api.py --host 127.0.0.1 --port 8000"
    assert serve("PORT=8123", "HOST=0.0.0.0") == ".venv/bin/python app_score_api.py --host 0.0.0.0 --port 8123"


STUB_PYTHON = """#!/bin/bash
# stands in for .venv/bin/python: writes the two files the demo compares, nothing else
case "$1" in
  pipeline_run_batch.py) [ "$2" = --start ] && mkdir -p "$CURATED_DIR" && echo same >"$CURATED_DIR/predictions_20261126.csv" ;;
  batch_score.py) echo same >"$5" ;;
esac
exit 0
"""


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_demo_spark_removes_its_temporary_zones(tmp_path, outcome):
    """scripts/demo_spark.sh, in a copy whose python is a stub: its mktemp folder is gone at the end."""
    import shutil

    (tmp_path / "scripts").mkdir()
    for script in ("demo_spark.sh", "demo_lib.sh"):
        shutil.copy(ROOT / "scripts" / script, tmp_path / "scripts")
    stub = tmp_path / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB_PYTHON if outcome == "success" else STUB_PYTHON.replace("echo same >\"$5\"", "exit 1"))
    stub.chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in __import__("os").environ.items() if k != "SPARK_DEMO_DIR"} | {"TMPDIR": str(temp)}
    done = subprocess.run(["bash", "scripts/demo_spark.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    (zones,) = re.findall(r"^zones under (\S+) ", done.stdout, re.M)
    assert zones.startswith(f"{temp}/spark-demo-")
    assert done.returncode == (0 if outcome == "success" else 1), done.stderr
    assert list(temp.iterdir()) == []
    if outcome == "success":
        assert done.stdout.splitlines()[-1].endswith(
            f"s; {zones} is removed (SPARK_DEMO_DIR=/some/folder make demo-spark keeps the files)")
    kept = tmp_path / "kept"
    again = subprocess.run(["bash", "scripts/demo_spark.sh"], cwd=tmp_path, env=env | {"SPARK_DEMO_DIR": str(kept)},
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == done.returncode and (kept / "curated" / "predictions_20261126.csv").is_file()


def test_shown_commands_write_no_scratch_files_into_the_repository():
    """A `$ ... > FILE` shown in the docs writes under /tmp (or /dev/null), never beside the code."""
    targets = [(page.name, target) for page, text in PAGES.items()
               for target in re.findall(r"^\$ .*?(?<![0-9&])>\s*([^\s&|;]+)", text, re.M)]
    assert ("stages.md", "/tmp/bad.json") in targets
    assert [t for t in targets if not t[1].startswith(("/tmp/", "/dev/null"))] == []
