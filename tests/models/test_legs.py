"""A leg's hold on its run folder (``models.legs.LegLock``), across real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from models.legs import LOCK_FILE, LegLock, RunInUse

HOLDER = "import sys, time; from pathlib import Path; from models.legs import LegLock; " \
    "LegLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)"  # fmt: skip


def _hold_in_another_process(out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_held_by_another_process_is_refused_naming_its_pid(tmp_path: Path) -> None:
    holder = _hold_in_another_process(tmp_path / "run")
    try:
        with pytest.raises(RunInUse, match=rf"another training leg \(pid {holder.pid}\) holds this run"):
            LegLock(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_frees_the_run_though_its_lock_file_stays(tmp_path: Path) -> None:
    # SIGKILL skips every cleanup: the kernel drops the lock with the process, so the file left
    # behind must not block the next leg
    holder = _hold_in_another_process(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / LOCK_FILE).is_file()
    with LegLock(tmp_path / "run") as lock:
        assert lock.path.read_text().strip() == str(os.getpid())


def test_a_released_run_can_be_held_again_and_a_new_folder_is_made(tmp_path: Path) -> None:
    with LegLock(tmp_path / "new" / "run"), pytest.raises(RunInUse):
        LegLock(tmp_path / "new" / "run")
    LegLock(tmp_path / "new" / "run").release()
