"""The README's command blocks work as written: every fenced block tagged `bash tested` runs, in order, in
a copy of the project as a fresh clone has it (the demo's state as `state/`); a block tagged
`bash tested fresh-clone` runs in a copy with no state at all.

Blocks that need a person, a cluster or the network (`make dev`, `kubectl`, `docker`, `helm`) stay
untagged; the commands of `make test` and CI run anyway.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.settings import PROJECT_ROOT
from tests.conftest import copy_applied_state

README = PROJECT_ROOT / "README.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", ".venv-ui", "state", "logs", "__pycache__", ".*_cache", "*.egg-info", "exported"
)
BLOCK_TIMEOUT_S = 300


def readme_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line, commands, needs a fresh clone) of each block whose info string starts `bash tested`."""
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if words[:2] == ["bash", "tested"]:
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((line, match["body"], "fresh-clone" in words[2:]))
    return blocks


BLOCKS = readme_blocks(README.read_text())


def blocks(fresh_clone: bool) -> list:
    return [
        pytest.param(line, body, id=f"README.md:{line}")
        for line, body, fresh in BLOCKS
        if fresh == fresh_clone
    ]


def test_blocks_are_found():
    assert len(BLOCKS) >= 5 and any(fresh for *_, fresh in BLOCKS)


def clone(target: Path) -> Path:
    """The project's files as a clone holds them, with this run's virtualenv linked in."""
    shutil.copytree(PROJECT_ROOT, target, ignore=NOT_IN_A_CLONE)
    (target / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return target


@pytest.fixture(scope="module")
def demo_checkout(tmp_path_factory, built_state):
    """A clone with the built demo state as its state/, the Feast registry applied on it."""
    checkout = clone(tmp_path_factory.mktemp("readme") / "mlplatform")
    _, resources = copy_applied_state(built_state[0], checkout / "state")
    resources["feature_store"].write_serving_repo(checkout / "feature_repo")  # what `make env` writes
    return checkout


def run_block(commands: str, checkout: Path) -> subprocess.CompletedProcess:
    """`bash -euo pipefail` in the checkout. The installed package resolves its state folder from its own
    source tree, so MLPLATFORM_STATE_DIR points it at the checkout's. Anything the block left running in
    the background (a server) is stopped with its process group. Settings `make test` exports
    (MLPLATFORM_*) are not passed on: a reader's shell does not have them."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLPLATFORM_")}
    env.update(
        PATH=f"{checkout / '.venv' / 'bin'}:{os.environ['PATH']}",
        MLPLATFORM_STATE_DIR=str(checkout / "state"),
        DAGSTER_HOME=str(checkout / "state" / "dagster"),
    )
    log = checkout.parent / "block.log"  # not a pipe: a server left in the background keeps it open
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", commands],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=BLOCK_TIMEOUT_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    return subprocess.CompletedProcess(proc.args, proc.returncode, output)


@pytest.mark.parametrize("line,commands", blocks(fresh_clone=False))
def test_block_runs_as_written_after_the_demo(line, commands, demo_checkout):
    result = run_block(commands, demo_checkout)
    assert result.returncode == 0, (
        f"README.md line {line}:\n{commands}\n--- output ---\n{result.stdout[-4000:]}"
    )
    assert "Traceback" not in result.stdout, result.stdout[-4000:]


@pytest.mark.parametrize("line,commands", blocks(fresh_clone=True))
def test_block_runs_as_written_on_a_fresh_clone(line, commands, tmp_path):
    checkout = clone(tmp_path / "mlplatform")
    result = run_block(commands, checkout)
    assert result.returncode == 0, (
        f"README.md line {line}:\n{commands}\n--- output ---\n{result.stdout[-4000:]}"
    )


FEAST_STAMPS = re.compile(r"^meta \{$.*?^\}$", re.DOTALL | re.MULTILINE)
UPDATED_SOURCE = re.compile(
    r"^Updated feature view (?P<view>\S+)\n\tbatch_source: (?P<change>.*?)\n\n", re.DOTALL | re.M
)


def changes_besides_feast_stamps(plan: str) -> list[str]:
    """What `feast plan` would change, ignoring Feast's own stamps: a source it applied carries the time it
    was applied, which the plan compares with the unapplied definition's (feast 0.67, once a view is
    materialized). Any other difference, or any other kind of change, is listed."""
    changes = []
    for update in UPDATED_SOURCE.finditer(plan):
        before, after = (side.strip() for side in FEAST_STAMPS.sub("", update["change"]).split(" -> "))
        if before != after:
            changes.append(f"feature view {update['view']}: {before} -> {after}")
    rest = UPDATED_SOURCE.sub("", plan)
    changes += [line for line in rest.splitlines() if re.match(r"(Created|Updated|Deleted|Removed) ", line)]
    return changes


def test_feast_plan_after_the_demo_changes_nothing(demo_checkout):
    """The CLI registers what Dagster registered: same sources, same paths, same online tables."""
    result = run_block("cd feature_repo && ../.venv/bin/feast plan", demo_checkout)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No changes to infrastructure" in result.stdout, result.stdout[-4000:]
    assert not changes_besides_feast_stamps(result.stdout), result.stdout[-4000:]


def test_a_real_difference_is_not_taken_for_a_stamp():
    def plan(old_uri: str, new_uri: str) -> str:
        stamp = "meta {\n  created_timestamp {\n    seconds: 1\n  }\n}"
        return (
            f'Updated feature view v\n\tbatch_source: uri: "{old_uri}"\n{stamp}\n'
            f' -> uri: "{new_uri}"\nmeta {{\n}}\n\n\nNo changes to infrastructure\n'
        )

    assert changes_besides_feast_stamps(plan("/a", "/b")) == ['feature view v: uri: "/a" -> uri: "/b"']
    assert changes_besides_feast_stamps(plan("/a", "/a")) == []
    assert changes_besides_feast_stamps("Created sqlite table t\n") == ["Created sqlite table t"]
