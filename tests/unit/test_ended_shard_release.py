"""A shard whose thread ended without handing its lease back (it crashed, or its lease was
lost) is released by the lease keeper's next tick: nothing of it can land any more
(``run_shard`` settles its pages; a page's writer returns only once every write it
started answered or was waited out), and a lease the table may hold ahead of the clock
must not pin the shard (tests/unit/test_lease_step_review.py, the flapping clock)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamodb_replicator.runner.runner import Runner

from .test_runner_outage import fake_region, runner_over, state


@pytest.fixture
def runner() -> Iterator[Runner]:
    yield from runner_over(fake_region)


def test_a_reaped_shard_whose_thread_ended_is_released_by_the_next_tick(runner: Runner) -> None:
    """Mutation: ``Held.drop`` not telling the keeper (``ended``) leaves it to expire."""
    runner.balance()
    ref = next(ref for ref, o in runner.owned.items() if o.region == "b")
    owned = runner.owned[ref]
    owned.stop.set()  # the thread ends as a crashed one does: not done, lease not given back
    owned.thread.join(30)
    assert not owned.thread.is_alive() and not owned.worker.done
    runner.held.reap()
    # The state this test is about: dropped, not released by the drop, still ours.
    assert ref not in runner.owned and ref not in state(runner, "b").released
    assert state(runner, "b").leases[ref] == "w" and runner.keeper.holds_leases("b")
    runner.keeper.renew_all()  # the keeper's tick
    assert state(runner, "b").released == [ref]
    assert ref not in state(runner, "b").leases
