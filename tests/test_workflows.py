"""The GitHub workflows: actionlint and zizmor must be clean, actions pinned by full SHA,
least permissions, no secrets, and every sweep step an Invoke task that exists."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def tool(name):
    """From the venv next to the interpreter (requirements-dev.txt), else PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -r requirements-dev.txt")
    return found


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "sweep.yml"}


def test_actionlint_is_clean():
    result = subprocess.run([tool("actionlint"), "-no-color", *map(str, WORKFLOWS)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_zizmor_is_clean():
    # --offline: no GitHub API (no token, no network); the online audits only add lookups.
    result = subprocess.run([tool("zizmor"), "--offline", "--persona", "auditor", "--no-progress",
                             *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_pinned_least_privilege_no_secrets(path):
    text = path.read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert re.search(r"^permissions:\n  contents: read\n", text, re.M)
    assert "secrets." not in text and "write" not in re.sub(r"#.*", "", text).split("jobs:")[0]


def test_sweep_steps_are_existing_tasks():
    text = (REPO / ".github" / "workflows" / "sweep.yml").read_text()
    used = set(re.findall(r"\./zmqlab ([\w-]+)", text))
    assert used == {"sweep-plan", "images", "sweep-run", "sweep-merge", "report", "sweep-gate"}
    listed = subprocess.run([sys.executable, "-m", "invoke", "--list"], capture_output=True,
                            text=True, cwd=REPO, timeout=60).stdout
    for name in used:
        assert re.search(rf"^\s+{name}\b", listed, re.M), name
