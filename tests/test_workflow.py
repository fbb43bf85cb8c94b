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


# Majors whose action.yml declares node24; node20 is gone from GitHub's runners (actionlint warns of it).
NODE24_MAJORS = {"actions/checkout": 5, "actions/setup-python": 6, "actions/upload-artifact": 6}


def test_workflow_actions_run_on_a_current_node(workflow):
    for step in workflow["jobs"]["equivalence"]["steps"]:
        uses = step.get("uses")
        if not uses:
            continue
        action, _, ref = uses.partition("@")
        assert action in NODE24_MAJORS, f"{uses}: add its first node24 major to NODE24_MAJORS"
        major = int(ref.lstrip("v").split(".")[0])
        assert major >= NODE24_MAJORS[action], f"{uses} runs on node20; use @v{NODE24_MAJORS[action]} or later"


def test_actionlint_with_shellcheck_passes_on_the_workflow(tmp_path):
    """The workflow cannot rot unseen: actionlint (and shellcheck on every run: block) as part of make test."""
    import shutil
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    actionlint = shutil.which("actionlint", path=str(bin_dir)) or shutil.which("actionlint")
    shellcheck = shutil.which("shellcheck", path=str(bin_dir)) or shutil.which("shellcheck")
    if not actionlint or not shellcheck:
        pytest.skip("actionlint or shellcheck is not installed (pip install -e '.[test]' installs both)")
    def lint(path):
        return subprocess.run([actionlint, "-shellcheck", shellcheck, "-pyflakes", "", "-no-color", str(path)],
                              capture_output=True, text=True, timeout=120)

    completed = lint(WORKFLOW)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # The lint can fail: an unquoted variable in a run: block (shellcheck SC2086) is caught.
    planted = tmp_path / "planted.yml"
    planted.write_text(WORKFLOW.read_text().replace('>> "$GITHUB_STEP_SUMMARY"', ">> $GITHUB_STEP_SUMMARY"))
    broken = lint(planted)
    assert broken.returncode != 0 and "SC2086" in broken.stdout, broken.stdout + broken.stderr


def test_workflow_puts_the_summary_on_the_run_page_and_uploads_a_screenshot(workflow):
    steps = workflow["jobs"]["equivalence"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert 'gru-report/report.md >> "$GITHUB_STEP_SUMMARY"' in runs
    assert "--window-size=1280,800" in runs and "first-screen.png" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "gru-report/first-screen.png" in upload["with"]["path"] and "gru-report/report.md" in upload["with"]["path"]
