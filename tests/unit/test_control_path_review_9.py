"""Adversarial review 9 of the whole control path (issue #23), on main 3a78c23: the
Handover of a page's region batches, leases fenced by answered expiries (``held_until``),
``restart_all``'s kept leases (``Held.settle_kept``). Each test is an interleaving on the
real Runner / keeper over in-memory state tables and a manual clock; a strict xfail pins a
reproduced defect (docs/concepts/guarantees.md, docs/operating/runner.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .reloading import reloading_runner, rewrite
from .test_runner_outage import FakeReplicator, FakeStreams, NoParking


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


@pytest.mark.xfail(
    strict=True,
    reason="a clean stop right after a full restart neither releases the kept leases nor "
    "gives the worker id back (Runner.shutdown drops only owned shards; Held.kept waits "
    "for a round that never comes)",
)
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
    a due release waits for a keeper tick that shutdown never runs.) Suggested fix: in
    ``Runner.shutdown``, after the owned drops, mark ``held.kept`` due (``settle_kept``)
    and send the due releases once per answering region (the keeper's
    ``_settle_dropped``) before ``keeper.stop``/``holds_leases``."""
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
