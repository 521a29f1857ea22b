"""Ctrl-C for long commands (``cli/interrupt.py``): the first stops at the next safe point
and says how to resume; a second stops at once, even when the work does not end."""

from __future__ import annotations

import signal
import subprocess
import sys

# A command whose work ends at the first Ctrl-C (``safe``), or hangs (a write that never
# returns: only the second Ctrl-C ends it).
SCRIPT = """
import sys
from dynamodb_replicator.cli.interrupt import Interruption
with Interruption(resume="tool --resume", stream=sys.stdout) as interruption:
    print("working", flush=True)
    interruption.stop.wait()
    if sys.argv[1] == "hang":
        import threading
        threading.Event().wait()
sys.exit(interruption.report())
"""


def start(mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "working\n"
    return process


def test_the_first_ctrl_c_stops_the_work_and_names_the_resume_command() -> None:
    process = start("safe")
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert output.splitlines() == [
        "stopping: saving the resume point (Ctrl-C again to stop at once)",
        "interrupted, resume point saved; resume with: tool --resume",
    ]


def test_a_second_ctrl_c_stops_at_once() -> None:
    process = start("hang")
    assert process.stdout is not None
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().startswith("stopping:")
    assert process.poll() is None  # the first one waits for the work, which hangs
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert output == "stopped at once; resume with: tool --resume\n"
