"""Review 16 of the control path (tests only, on main c363fbd): the signal handling
(cli/signals.py, review 15's fix of ``Interruption`` and ``_deliver``) and its users
attacked first, then the whole path against docs/concepts/guarantees.md (Timing and
clocks) and docs/operating/runner.md.

Reproduced (strict xfails until fixed on main: a signal's line is written on a thread of its own,
waited 1 s at most (`SAY_WITHIN_SECONDS`), and `Signals.__enter__` undoes itself when an
install raises; reverting either fix fails its test again; nothing lost, resurrected or
landed late in either):

1. (low; liveness, a pre-existing defect that the signals' thread keeps) While a long
   command's stderr blocks (a pipe nobody reads: ``cmd 2>&1 | less`` with the pager
   waiting, a stuck log shipper, a terminal paused by Ctrl-S), neither Ctrl-C stops it.
   The first one's ``_on_signal`` blocks in its "stopping" line before ``stop`` is set;
   the second is written to the signals' pipe, which nobody reads while the first is
   being handled, so its ``os._exit`` never comes (add-region.md: "A second Ctrl-C stops
   at once"; interrupt.py). Only SIGKILL (or Ctrl-\\) ends it; nothing is lost (resume
   points are saved per round in the state table). The handler before d5be7af blocked
   the same way (its second call wrote its line before ``os._exit``). Fix shape tried
   (src edit, reverted): ``_on_signal`` says its line on a daemon thread, waits for it
   at most 1 s, then sets ``stop`` (first) or calls ``os._exit`` (second): the test passes
   and test_interrupt.py still passes (3 of 3)
   (``test_a_second_ctrl_c_stops_at_once_while_the_first_ones_line_cannot_be_written``).
2. (very low; a leak, no stop lost) ``Signals.__enter__`` starts its thread and opens its
   pipe before it installs the handlers; when ``signal.signal`` raises (entered off the
   main thread: ValueError, as before d5be7af; a signal that cannot be caught: OSError,
   after the handlers before it were installed), ``__exit__`` is not called: the thread
   waits on the pipe for good, both ends stay open, and a handler installed stays (a
   later SIGUSR1 still reaches ``on_signal`` after the ``with`` failed). The commands
   enter it on the main thread with SIGINT and SIGTERM, which cannot fail: only an
   embedding that runs a command on another thread meets it (one thread, two descriptors
   per attempt). Fix shape tried: ``__enter__`` undoing itself (``__exit__``) when an
   install raises: passes, both cases
   (``test_a_signals_enter_that_raises_leaves_no_thread_pipe_or_handler_behind``).

Pinned here (passing): twenty ``Interruption``s in one process, each stopped by a SIGTERM,
leave as many pipe ends and signals' threads as before and the previous handlers in place
(fails with ``os.close(self._read)`` removed from ``__exit__``); a Ctrl-C while
``dynamodb-replicator run`` (cli/run.py's ``run``, the real Runner and keeper over the
in-memory tables) waits in ``Claims.claim`` for another process's live claim ends the wait;
``run`` shuts down and returns 0, the other process's claim untouched, no lease taken, our
claim in the other regions given back, the handlers put back (fails, by pytest-timeout,
with ``runner.stop_soon()`` removed from ``on_signal``).

What held (tried, reasoned, not pinned again):

- A signal between ``__enter__``'s two installs: the one not yet installed goes to its
  previous handler (SIG_DFL ends the process, ``default_int_handler`` raises
  KeyboardInterrupt out of ``__enter__``: ``main`` exits 130; the thread then left is
  defect 2's), as before the ``with``. No signal handed to a closed or reused
  descriptor: ``__exit__`` restores the handlers before it closes the write end, and
  CPython's ``signal.signal`` runs pending handlers (ours) before it replaces one, so a
  signal that came just before is written while the pipe is open and delivered before
  the join returns; one after goes to the restored handler.
- ``__exit__`` while a callback runs: it joins it. ``run``'s (a log line, two
  ``Event.set``) takes no lock the main thread holds across the join; ``Interruption``'s
  blocks only on its stream (defect 1). A callback's ``os._exit`` while the main thread is
  in ``__exit__`` (a second Ctrl-C as the work ends) ends the process 130, as documented;
  nothing is half written (resume points are conditional puts in the state table, not a
  file).
- A second Ctrl-C to ``run`` after its ``with`` (between the restore and the return) meets
  ``default_int_handler``: ``main`` would print "interrupted" and exit 130 although the
  runner stopped cleanly (before d5be7af the handler was never restored). The window is
  the join of an idle signals' thread, a few bytecodes: a stop's seconds are spent inside
  the ``with`` (a signal there is logged and changes nothing). Not pinned.
- The C-level handler may run on the signals' thread: its ``os.read`` is retried after
  EINTR (PEP 475). A callback raising a BaseException would end ``_deliver``: none does.
- A Ctrl-C during ``Runner.start``'s checks: not cut short (as before; review 15 (d)).
- ``Held.stop`` sets the stop events before ``fix_fences``: a renewal answered between
  the two loops moves a fence, but nothing runs there (no request, no wait), so it is the
  same as an answer just before ``Held.stop`` was called: the fence "when the stop began"
  is then that answer's. Not a defect.
- The control-plane simulations on fresh seeds from 7000000, none violated (each
  module's ``run`` and ``violations`` seed by seed, 45 s a run): shard_sim.py 2867
  (7000000-7002866), shard_sim_steps.py 2777 (7000000-7002776), the base simulation 11495
  (7000000-7011494), clock steps 10849 (7000000-7010848), dropped leases under steps 11172
  (7000000-7011171), late landings 10076 (7000000-7010075).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from dynamodb_replicator.cli import run as run_command
from dynamodb_replicator.cli.interrupt import Interruption
from dynamodb_replicator.cli.signals import Signals
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.preflight import Checked, Checks
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_interrupt import _line_within
from .test_runner_outage import CONFIG, NAMES, FakeReplicator, FakeStreams, NoParking

# A long command whose stderr is a pipe nobody reads any more (``cmd 2>&1 | less`` with
# the pager not reading, a stuck log shipper, a terminal paused with Ctrl-S): full, so a
# write to it blocks. The work hangs (a write that never returns): only the second
# Ctrl-C ends it. ``flushing`` on stdout says the first Ctrl-C's line is being written.
BLOCKED = """
import io, os, sys, threading
from dynamodb_replicator.cli.interrupt import Interruption

read_end, write_end = os.pipe()
os.set_blocking(write_end, False)
try:
    while True:
        os.write(write_end, b"x")
except BlockingIOError:
    pass  # full
os.set_blocking(write_end, True)


class Stderr(io.TextIOWrapper):
    def flush(self) -> None:
        print("flushing", flush=True)
        super().flush()


with Interruption(resume="tool --resume", stream=Stderr(open(write_end, "wb"))):
    print("working", flush=True)
    threading.Event().wait()
"""


def test_a_second_ctrl_c_stops_at_once_while_the_first_ones_line_cannot_be_written() -> None:
    """Interleaving: a long command under ``Interruption`` with a stderr that blocks; the
    first Ctrl-C reaches ``_on_signal`` on the signals' thread, whose "stopping" line
    blocks before ``stop`` is set; the second Ctrl-C is written to the signals' pipe, which
    nobody reads while the first is being handled: the command never ends (add-region.md,
    interrupt.py: "A second SIGINT stops the process at once")."""
    process = subprocess.Popen([sys.executable, "-c", BLOCKED], stdout=subprocess.PIPE, text=True)
    try:
        assert _line_within(process, 60) == "working\n"
        process.send_signal(signal.SIGINT)
        # The state this test is about: the first Ctrl-C's line is out, and blocks.
        assert _line_within(process, 60) == "flushing\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
    finally:
        process.kill()
        process.wait()


def _enter_off_the_main_thread() -> Signals:
    """An ``Interruption`` entered on a thread other than the main one (a command run by
    a thread of a tool that embeds the CLI): ``signal.signal`` refuses it."""
    interruption = Interruption(resume="tool --resume", stream=io.StringIO())
    refused: list[BaseException] = []

    def enter() -> None:
        try:
            with interruption:
                raise AssertionError("entered off the main thread")
        except ValueError as exc:
            refused.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert len(refused) == 1  # the state: ``__enter__`` raised
    return interruption._signals


def _enter_an_uncatchable_signal() -> Signals:
    """``Signals`` over SIGUSR1 and SIGKILL: the second handler cannot be installed, after
    the first was."""
    signals = Signals((signal.SIGUSR1, signal.SIGKILL), lambda _number: None)
    with pytest.raises(OSError):
        signals.__enter__()
    return signals


@pytest.mark.parametrize(
    "enter",
    [_enter_off_the_main_thread, _enter_an_uncatchable_signal],
    ids=["off-the-main-thread", "uncatchable"],
)
def test_a_signals_enter_that_raises_leaves_no_thread_pipe_or_handler_behind(
    enter: Callable[[], Signals],
) -> None:
    """Interleaving: ``Signals.__enter__`` opens its pipe and starts its thread, then
    ``signal.signal`` raises (off the main thread: ValueError; a signal that cannot be
    caught: OSError, after the handlers before it were installed). ``__exit__`` is not
    called for a ``with`` whose ``__enter__`` raised: the thread waits on the pipe for
    good, both ends stay open, and the handlers installed stay (a later SIGUSR1 still
    goes to ``on_signal``, after the ``with`` failed)."""
    before = signal.getsignal(signal.SIGUSR1)
    signals = enter()
    try:
        thread = signals._thread
        assert thread is not None
        thread.join(timeout=10)  # it ends at the pipe's end, once the write end is closed
        assert not thread.is_alive(), "the signals' thread (and its pipe) left behind"
        assert signal.getsignal(signal.SIGUSR1) == before, "a handler left installed"
    finally:
        signal.signal(signal.SIGUSR1, before)
        if signals._thread is not None and signals._thread.is_alive():
            os.close(signals._write)
            signals._thread.join()
            os.close(signals._read)


def _pipes() -> int:
    """How many pipe ends this process has open."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISFIFO(os.fstat(int(name)).st_mode):
                count += 1
        except OSError:  # the listing's own descriptor, closed since
            continue
    return count


def _signals_threads() -> int:
    return sum(t.name == "signals" and t.is_alive() for t in threading.enumerate())


def test_interruptions_used_one_after_another_leave_no_pipe_or_thread_behind() -> None:
    """Twenty commands' worth of ``Interruption`` in one process, each stopped by a SIGTERM
    (the signal taken on the signals' thread): afterwards, as many pipe ends and signals'
    threads as before, and the previous handlers in place (fails with ``__exit__``'s
    closes removed)."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    pipes, threads = _pipes(), _signals_threads()
    for _ in range(20):
        with Interruption(resume="tool --resume", stream=io.StringIO()) as interruption:
            assert _signals_threads() == threads + 1 and _pipes() == pipes + 2
            os.kill(os.getpid(), signal.SIGTERM)
            assert interruption.stop.wait(30), "the SIGTERM was not taken"
    assert (_pipes(), _signals_threads()) == (pipes, threads)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


@pytest.mark.timeout(30)  # a mutation that loses the Ctrl-C fails here, not at 300 s
def test_a_ctrl_c_during_the_worker_ids_claim_wait_stops_run_and_leaves_the_claim_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaving: ``dynamodb-replicator run`` (cli/run.py's ``run``, the real Runner and
    lease keeper over the in-memory state tables) starts while another process's claim on
    worker id ``w`` in region a is live and not renewed: ``Runner.start`` waits in
    ``Claims.claim`` for it to expire. A Ctrl-C comes during that wait (sent by region a's
    second refused heartbeat). The wait ends, ``run`` shuts down and returns 0; the other
    process's claim is untouched, no lease was taken anywhere, the handlers are put back."""
    clock = ManualClock()
    tables = {n: LeaseTable(clock) for n in NAMES}
    other_until = ms(clock.now() + 3600)
    MemoryStateStore(tables["a"]).heartbeat(
        "w", other_until, instance="other", now_ms=ms(clock.now()), order=1
    )
    refused = [0]

    def before(call: str) -> None:
        if call == "heartbeat":
            refused[0] += 1
            if refused[0] == 2:  # inside the wait: the first refusal started it
                os.kill(os.getpid(), signal.SIGINT)

    regions = {
        n: Region(
            RegionSpec(n),
            FakeStreams(n),
            MemoryStateStore(tables[n], before if n == "a" else lambda _call: None),
            FakeReplicator(),
            NoParking(),
        )
        for n in NAMES
    }
    checks = Checks(all=lambda config: Checked({n: {} for n in NAMES}))
    made: list[Runner] = []

    def runner(config: RunnerConfig, **_kw: object) -> Runner:
        made.append(
            Runner(
                config,
                worker_id="w",
                clock=clock,
                connect=lambda s, *_: regions[s.name],
                checks=checks,
            )
        )
        made[0].keeper.dead = lambda _holder: False  # alive, not renewing: wait for expiry
        return made[0]

    monkeypatch.setattr(run_command, "Runner", runner)
    monkeypatch.setattr(run_command, "load_config", lambda _path: CONFIG)
    monkeypatch.setattr(run_command, "configure", lambda *_a, **_kw: None)
    monkeypatch.setattr(run_command, "tune_interpreter", lambda: None)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    args = argparse.Namespace(
        log_level="INFO",
        log_format="text",
        config="replicator.toml",
        worker_id="w",
        metrics_port=None,
        metrics_host="127.0.0.1",
    )
    assert run_command.run(args) == 0
    # The state this test is about: the Ctrl-C came while the claim was waited for.
    assert refused[0] >= 2 and made[0].stopping.is_set()
    assert tables["a"].workers["w"] == ("other", other_until)
    for name in NAMES:
        live = [ref for ref, lease in tables[name].leases.items() if lease.expires_ms > 0]
        assert not live, f"{name}: leases taken during a stop: {live}"
        _holder, until = tables[name].workers.get("w", (made[0].instance, 0))
        assert name == "a" or until == 0, f"{name}: our claim left live"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
