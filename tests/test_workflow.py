"""The GitHub Actions workflow parses, spans several framework versions, runs the README's test
command and uploads the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "equivalence.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def _readme_command(purpose: str) -> str:
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        if purpose in comment:
            return command.strip()
    raise AssertionError(f"the README names no command for {purpose!r}")


def test_workflow_parses_and_spans_framework_versions(workflow):
    job = workflow["jobs"]["equivalence"]
    cells = job["strategy"]["matrix"]["include"]
    assert len({c["torch"] for c in cells}) >= 2 and len({c["tensorflow"] for c in cells}) >= 2, cells
    assert job["strategy"]["fail-fast"] is False
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "push" in triggers and "pull_request" in triggers


def test_workflow_runs_the_readme_test_command_and_uploads_the_report(workflow):
    steps = workflow["jobs"]["equivalence"]["steps"]
    runs = [s.get("run", "") for s in steps]
    test_command = _readme_command("test suite")
    assert test_command == "make test"
    assert any(r.startswith(test_command) for r in runs), runs
    assert any("baseline --check" in r for r in runs) and any("bench-smoke" in r for r in runs)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "gru-report/index.html" in upload["with"]["path"] and "gru-report/report.json" in upload["with"]["path"]


def test_ci_script_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(_readme_command('test suite'))}$", script, re.M), script
