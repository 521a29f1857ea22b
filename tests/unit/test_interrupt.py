"""Ctrl-C for long commands (``cli/interrupt.py``): the first stops at the next safe point
and says how to resume; a second stops at once, even when the work does not end."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time

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


# The main thread inside ``stop.wait`` holds the event's lock for a few bytecodes: here it
# holds it until the test writes a line, while a Ctrl-C comes.
HOLDING = """
import sys
from dynamodb_replicator.cli.interrupt import Interruption
with Interruption(resume="tool --resume", stream=sys.stdout) as interruption:
    with interruption.stop._cond:
        print("holding", flush=True)
        sys.stdin.readline()
    interruption.stop.wait()
sys.exit(interruption.report())
"""


def _line_within(process: subprocess.Popen[str], seconds: float) -> str | None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    return process.stdout.readline() if ready else None


def test_a_ctrl_c_while_the_main_thread_holds_the_stop_events_lock_still_stops() -> None:
    """A signal handler that set the event itself would wait for the lock its own thread
    holds: the command would never stop, not even at the second Ctrl-C."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDING], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        # The state the test is about: the event's lock held by the main thread.
        assert process.stdout.readline() == "holding\n"
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        line = _line_within(process, 30)
        assert line is not None and line.startswith("stopping:"), "the Ctrl-C was not taken"
        process.stdin.write("go\n")
        process.stdin.flush()
        output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert process.returncode == 130
        assert output == "interrupted, resume point saved; resume with: tool --resume\n"
    finally:
        process.kill()
        process.wait()
