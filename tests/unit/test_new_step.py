"""The worked example of a step (tests/fixtures/new_step: `motd`) joins a copy of the kit as
tasks/README.md's "Adding a step" says: its files, laid out as in the tree, and register.patch (its line in
PIPELINE). The copy's unit suite passes, and the copy differs from the tree in four files at most."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.settings import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "tests" / "fixtures" / "new_step"
NESTED = "FLASKDEPLOY_EXAMPLE_STEP_COPY"  # set in the copy's run: this test does not run there again


def tree_files(root: Path) -> list[str]:
    """The tree's files as a clean clone has them, with what a working tree adds (ignored ones left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    return [name for name in listed.split("\0") if name and (root / name).is_file()]


def differing(copy: Path, root: Path) -> list[str]:
    """The files of the copy that the tree lacks or holds otherwise."""
    return sorted(
        name for name in tree_files(copy)
        if not (root / name).is_file() or not filecmp.cmp(copy / name, root / name, shallow=False)
    )  # fmt: skip


@pytest.mark.skipif(os.environ.get(NESTED) == "1", reason="the copy's own run of the unit suite")
@pytest.mark.timeout(900)
def test_the_example_step_joins_a_copy_of_the_kit_in_four_files_and_its_unit_suite_passes(tmp_path):
    copy = tmp_path / "kit"
    for name in tree_files(PROJECT_ROOT):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)  # for tree_files(copy)
    for source in EXAMPLE.rglob("*"):
        if source.is_file() and source.name != "register.patch":
            target = copy / source.relative_to(EXAMPLE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    patched = subprocess.run(
        ["git", "apply", str(EXAMPLE / "register.patch")], cwd=copy, capture_output=True, text=True
    )
    assert patched.returncode == 0, f"register.patch no longer applies: {patched.stderr}"
    assert differing(copy, PROJECT_ROOT) == [
        "tasks/runtime/motd.sh", "tasks/steps/__init__.py", "tasks/steps/motd.py",
        "tests/unit/steps/test_motd.py",
    ]  # fmt: skip
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/unit", "-q", "-x", "-rp", "-p", "no:cacheprovider",
         "-o", "addopts="],
        cwd=copy, capture_output=True, text=True, env={**os.environ, NESTED: "1"}, timeout=880,
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout[-4000:] + suite.stderr[-2000:]
    ran = [
        line for line in suite.stdout.splitlines() if line.startswith("PASSED tests/unit/steps/test_motd.py")
    ]
    assert len(ran) == 4, suite.stdout[-4000:]  # the example's own tests, among the others
