"""Adversarial review of the worker id's claim given back at a clean stop (a released
item, ``expires`` 0, instead of a delete; our own claim taking our heartbeats in order,
expired or not; ``Runner.shutdown`` keeping the claim while ``holds_leases``): the two
defects it found, fixed (the keeper forgets a claim it gave back; a finished shard's lease is
released when its thread is reaped). The real runner and lease keeper over the
in-memory state table, whose conditions are aws/state_workers.py's."""

from __future__ import annotations

import pytest

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import Page
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_runner_outage import CONFIG, NAMES, FakeReplicator, FakeStreams, NoParking


def _runner(
    clock: ManualClock, streams: type[FakeStreams] = FakeStreams
) -> tuple[Runner, dict[str, LeaseTable]]:
    tables = {n: LeaseTable(clock) for n in NAMES}
    regions = {
        n: Region(
            RegionSpec(n),
            streams(n),
            MemoryStateStore(tables[n]),
            FakeReplicator(),
            NoParking(),
        )
        for n in NAMES
    }
    runner = Runner(CONFIG, worker_id="w", clock=clock, connect=lambda s, *_: regions[s.name])
    runner.regions = regions
    return runner, tables


def _live_leases(table: LeaseTable, now: float) -> dict[object, int]:
    return {
        ref: lease.expires_ms for ref, lease in table.leases.items() if lease.expires_ms > ms(now)
    }


def test_a_runner_reused_after_a_clean_stop_takes_no_lease_under_its_released_claim() -> None:
    """Interleaving: the runner balances (claim in every region until 1030, leases taken),
    stops cleanly at 1005: every lease released, the claim given back (the released item,
    expires 0). The same Runner object is run again (``run`` skips ``start`` while
    ``regions`` is set) and balances at 1006: the keeper still holds ``claims`` = 1030,
    more than half a lease ahead, so ``acquire`` sends no heartbeat first and leases until
    1030 while the table's claim reads released. Guarantees: "A lease never outlives its
    worker id's claim as stored"; a process of w elsewhere now takes the free claim (and,
    should it die on its machine, its successor proves it dead and inherits every lease of
    w, this live one too)."""
    clock = ManualClock(1000.0)
    runner, tables = _runner(clock)
    runner.balance()
    assert _live_leases(tables["a"], clock.t), "leases taken"
    clock.t = 1005.0
    runner.shutdown()
    # The state this test is about: a clean stop, every lease released, the claim released.
    assert all(not _live_leases(t, clock.t) for t in tables.values())
    assert all(t.workers["w"][1] == 0 for t in tables.values())
    clock.t = 1006.0
    runner.balance()  # the same Runner, run again
    for name, table in tables.items():
        live = _live_leases(table, clock.t)
        claim = table.workers["w"][1]
        assert all(expires <= claim for expires in live.values()), (
            f"{name}: leases live until {sorted(live.values())}, the claim until {claim}"
        )


class ClosedStreams(FakeStreams):
    """Every shard closed and read to its end at the first page: its worker finishes."""

    def read(self, iterator: str, limit: int = 1000) -> Page:
        return Page([], None)


def test_a_runner_stopped_cleanly_after_its_shards_finished_restarts_elsewhere_at_once() -> None:
    """Interleaving: the runner holds shards that close and are read to their end; the next
    round reaps their finished threads (``drop(release=False)``: the lease stays in the
    table until it expires, ``_gone`` keeps it up to its ceiling, 1030). The runner stops
    cleanly at 1005 with no release failed; ``holds_leases`` is True for every region, so the
    claim is kept. docs/operating/runner.md: "one stopped cleanly restarts at once ...
    unless a release failed at the stop"; a process of w on another machine (a rescheduled
    pod) at 1005.5 meets a live claim instead. (Shards close every few hours on DynamoDB
    Streams: a stop within a lease of one finishing is common.)"""
    clock = ManualClock(1000.0)
    runner, tables = _runner(clock, ClosedStreams)
    runner.balance()
    assert runner.owned, "shards taken"
    clock.t = 1005.0
    for _ in range(len(NAMES) * 2 + 1):  # a round reaps the finished, takes more
        for owned in list(runner.owned.values()):
            owned.thread.join(timeout=10.0)
        runner.balance()
    # The state this test is about: every shard finished, none held, no release failed.
    assert runner.finished and not runner.owned
    runner.shutdown()
    clock.t = 1005.5
    for name, table in tables.items():
        other = MemoryStateStore(table)
        try:
            other.heartbeat(
                "w", ms(clock.t + 30.0), instance="elsewhere", now_ms=ms(clock.t), order=1
            )
        except WorkerIdInUseError as held:
            pytest.fail(
                f"{name}: a cleanly stopped worker id is held "
                f"{held.expires_ms / 1000 - clock.t:.1f} s"
            )
