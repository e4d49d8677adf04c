"""The docs stay true: the README names every script, links resolve, every --help works."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import ROOT, run_script

README = (ROOT / "README.md").read_text(encoding="utf-8")
SCRIPTS = sorted(p.name for p in ROOT.glob("*.py"))
CLI_SCRIPTS = [name for name in SCRIPTS if "def main(" in (ROOT / name).read_text(encoding="utf-8")]


def test_there_are_scripts():
    assert {"train.py", "score.py", "registry.py", "export_data.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_readme_names_every_script(script):
    assert script in README, f"README.md does not mention {script}"


@pytest.mark.parametrize("script", CLI_SCRIPTS)
def test_every_help_exits_zero(script):
    run = run_script(script, "--help")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:")
    assert "(default: None)" not in run.stdout
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", run.stdout), "a default is shown twice"


def test_readme_links_exist():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert local, "expected the README to link to project files"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_request_files_exist():
    """Every payload a README curl line sends (-d @FILE) ships with the repo."""
    payloads = set(re.findall(r"-d @([\w./-]+)", README))
    assert payloads, "expected curl examples with -d @FILE"
    assert not [p for p in payloads if not (ROOT / p).is_file()]


def test_example_payloads_score_as_documented(service):
    import json

    good = json.loads((ROOT / "examples" / "one_record.json").read_text())
    assert len(service.score_payload(good)["results"]) == 1
    bad = json.loads((ROOT / "examples" / "worst_area_infinity.json").read_text())
    with pytest.raises(ValueError, match="record 0, feature 'worst area': expected a finite number, got Infinity"):
        service.score_payload(bad)


def test_readme_make_targets_exist():
    targets = set(re.findall(r"^([a-zA-Z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"demo", "test"} <= named
    assert not named - targets, f"README names make targets that do not exist: {named - targets}"


def test_quick_start_comes_first_with_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make \w+", quick, re.M)
    assert commands[:2] == ["make demo", "make test"]


def test_make_help_lists_documented_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("demo", "test", "install"):
        assert re.search(rf"\b{target}\b", out)


def test_mermaid_labels_with_parentheses_are_quoted():
    """Mermaid rejects an unquoted node label holding parentheses (`make diagrams` renders them)."""
    text = (ROOT / "architecture_diagram.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    # Once quoted labels and shape brackets are removed, no parenthesis may remain.
    def leftover(line: str) -> str:
        line = re.sub(r'"[^"]*"', "", line)
        return re.sub(r"\[\(|\)\]|\(\(|\)\)", "", line)

    unquoted = [line.strip() for block in blocks if block.startswith("flowchart")
                for line in block.splitlines() if re.search(r"[()]", leftover(line))]
    assert "(" in leftover('A[Blob (raw)]') and leftover('A[("raw/")]') == "A"
    assert not unquoted, unquoted
    rendered = sorted(p.name for p in (ROOT / "docs" / "diagrams").glob("diagram-*.png"))
    assert rendered == [f"diagram-{n}.png" for n in range(1, len(blocks) + 1)]
