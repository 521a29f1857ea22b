"""Adversarial review 9 of the whole control path (issue #23), on main 3a78c23: the
Handover of a page's region batches, leases fenced by answered expiries (``held_until``),
``restart_all``'s kept leases (``Held.settle_kept``). Each test is an interleaving on the
real Runner / keeper over in-memory state tables and a manual clock; each pinned a
reproduced defect, since fixed (docs/concepts/guarantees.md, docs/operating/runner.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamodb_replicator.core.errors import ThrottledError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .reloading import reloading_runner, rewrite
from .test_runner_outage import FakeReplicator, FakeStreams, NoParking

SHARD_A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")


def restarting(tmp_path: Path) -> tuple[Runner, Path, dict[str, LeaseTable], ManualClock]:
    """The Runner as worker w over in-memory state tables a, b, c (one ``LeaseTable`` each),
    its config file in ``tmp_path``."""
    path = tmp_path / "c.toml"
    rewrite(path)
    clock = ManualClock()
    tables: dict[str, LeaseTable] = {}

    def connect(spec: RegionSpec) -> Region:
        table = tables.setdefault(spec.name, LeaseTable(clock))
        store = MemoryStateStore(table, name=spec.name)
        return Region(spec, FakeStreams(spec.name), store, FakeReplicator(), NoParking())

    runner = reloading_runner(path, clock, connect)
    return runner, path, tables, clock


@pytest.mark.parametrize("round_ended", [False, True], ids=["before-round", "after-round"])
def test_a_clean_stop_right_after_a_full_restart_hands_back_the_kept_leases_and_the_id(
    tmp_path: Path, round_ended: bool
) -> None:
    """Interleaving: a reload that is not a reshape (``restart_all``) drops every shard with
    ``keep=True``: its lease goes to ``Held.kept``, neither held nor due for release, until
    the next round's ``settle_kept``, which only marks those it did not take again due
    for the keeper's next tick. SIGTERM before that round (or one that raised before its
    last step), or after it but before that tick: ``shutdown`` drops only ``owned``
    shards, stops the keeper (no tick sends anything), and ``holds_leases`` keeps the
    claim above the kept or due leases. So a clean stop leaves every
    shard leased for up to a lease (another worker waits), and the worker id claimed (a
    restart under it waits too), while docs/operating/runner.md says one stopped cleanly
    hands its shards back and "restarts at once (its claim is given back)", the only
    exception a release that failed at the stop. (Same before 3a78c23 with ``ended``:
    a due release waits for a keeper tick that shutdown never runs.) Fixed:
    ``Runner.shutdown``, after the owned drops, marks ``held.kept`` due (``settle_kept``)
    and sends the due releases once per answering region (``keeper.settle_now``) before
    ``keeper.stop``/``holds_leases``."""
    runner, path, tables, clock = restarting(tmp_path)
    runner.balance()
    held = {ref: o.region for ref, o in runner.owned.items()}
    rewrite(path, extra="page_limit = 500\n")  # not a reshape: every worker restarts
    assert runner.reload_if_changed()
    # The state this test is about: every lease kept by the restart, none owned.
    assert held and not runner.owned and set(runner.held.kept) == set(held)
    if round_ended:  # the round after it ran and took none again (a share that shrank)
        runner.held.settle_kept()
        assert all(runner.keeper._gone[ref].release_due for ref in held)
    runner.stop_soon()  # SIGTERM before the keeper's next tick
    runner.shutdown()
    live = [ref for ref, r in held.items() if tables[r].leases[ref].expires_ms > ms(clock.t)]
    claimed = [r for r, t in tables.items() if t.workers.get("w", ("", 0))[1] > ms(clock.t)]
    assert not live, f"{len(live)} of {len(held)} leases still held after a clean stop"
    assert not claimed, f"worker id still claimed in {claimed} after a clean stop"


def test_a_kept_lease_whose_reacquire_failed_and_that_the_round_left_is_handed_back(
    tmp_path: Path,
) -> None:
    """Interleaving: ``restart_all`` keeps every lease (``Held.kept``); meanwhile another
    worker joined, so the next round takes only a share of them back. Its acquire of the
    first kept shard is throttled (no answer, nothing stored): ``Holdings.acquire`` puts
    the ``sent`` Lease in ``_gone`` in place of the kept one, carrying its flags (dropped,
    not due), and the round moves on to other shards. At the round's end ``settle_kept``
    calls ``keeper.ended(ref, kept)``, which ignores it (``_gone[ref] is not kept``): the
    lease is neither taken again nor due, so no tick releases it and no later round tries
    it (the share is full). It stays ours in the table until it runs out, while the
    round's other leftovers are handed back at the next tick, contrary to "the next round
    takes them again, and hands back those it does not" (docs/operating/runner.md).
    Liveness only (a lease later; lowered if stored ahead). Fixed: ``settle_kept``
    marks due whatever dropped lease of that ref ``_gone`` holds through the kept lease's
    store (``keeper.ended_kept``)."""
    runner, path, tables, clock = restarting(tmp_path)
    runner.balance()
    held = {ref: o.region for ref, o in runner.owned.items()}
    rewrite(path, extra="page_limit = 500\n")
    assert runner.reload_if_changed()
    assert held and not runner.owned and set(runner.held.kept) == set(held)
    for table in tables.values():  # another worker joined: a share of 3 of the 6 each
        table.workers["w2"] = ("other", ms(clock.t + 3600))
    throttled: list[ShardRef] = []
    store = runner.keeper.stores["a"]
    assert isinstance(store, MemoryStateStore)

    def throttle_first_acquire(call: str) -> None:
        if call == "acquire" and not throttled:
            throttled.append(SHARD_A0)
            raise ThrottledError("acquire throttled", region="a")

    store.before = throttle_first_acquire
    runner.balance()  # the round after the restart: ends with ``settle_kept``
    store.before = lambda _call: None
    # The state this test is about: the throttled shard neither taken again nor owned,
    # its lease still ours in the table, and the round over.
    assert throttled == [SHARD_A0] and SHARD_A0 not in runner.owned
    assert tables["a"].leases[SHARD_A0].owner == "w" and not runner.held.kept
    left = [ref for ref in held if ref not in runner.owned]
    assert SHARD_A0 in left and len(left) == 3
    runner.keeper.renew_all()  # the keeper's next tick sends the due releases
    try:
        released = [ref for ref in left if tables[held[ref]].leases[ref].expires_ms == 0]
        assert set(released) == set(left), f"not handed back: {set(left) - set(released)}"
    finally:
        runner.shutdown()
