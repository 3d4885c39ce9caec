"""Progress on a terminal: `run` under a pseudo-terminal draws bars (through pipes it logs lines instead,
which the concurrent runs of tests/test_faults.py check)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from pipelines.demo.endpoint import LocalSageMaker
from tests.conftest import REGIONS, SMALL_FLEET


def _on_a_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return process.wait(timeout=300), output.decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_per_partition(aws: LocalSageMaker, fleet: list[dict], tmp_path: Path) -> None:
    env = {**os.environ, "SMW_REGIONS": ",".join(REGIONS), "SMW_WAREHOUSE": str(tmp_path / "warehouse")}
    env.pop("SMW_LOG_LEVEL", None)
    command = [sys.executable, "-m", "pipelines.cli", "run"]

    code, shown = _on_a_terminal(command, {**env, "COLUMNS": "160"})
    assert code == 0, shown
    for region in REGIONS:  # one bar per partition, ending with what it stored
        assert f"default/{region}" in shown
    stored = sum(int(line.split(" stored")[0].split()[-1].replace(",", "")) for line in _final_lines(shown))
    assert stored == SMALL_FLEET.jobs
    assert "published" in shown and "━" in shown
    assert " - dagster - INFO - " not in shown  # the bars replace the info lines
    assert f"Published {SMALL_FLEET.jobs:,} jobs" in shown
    # A run whose output goes to pipes logs lines instead: tests/test_faults.py's concurrent runs check that.


def _final_lines(shown: str) -> list[str]:
    """The last drawing of each partition's bar (the terminal output redraws them in place)."""
    last: dict[str, str] = {}
    for line in shown.replace("\r", "\n").splitlines():
        for region in REGIONS:
            if f"default/{region}" in line and " stored" in line:
                last[region] = line
    return list(last.values())
