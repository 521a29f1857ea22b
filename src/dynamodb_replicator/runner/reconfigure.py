"""Taking up an edited configuration (docs/concepts/reload.md): ``take_up`` a change of
regions and tables, stopping only the shard workers it concerns; ``restart_all`` any other
change, restarting every shard worker from its checkpoint, the leases kept."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from dynamodb_replicator.observe.conflict_log import open_conflict_log
from dynamodb_replicator.runner.balancer import lease_stores
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.preflight import Checked
from dynamodb_replicator.runner.reloader import Reshape
from dynamodb_replicator.runner.replaceable import Replaceable

if TYPE_CHECKING:
    from dynamodb_replicator.runner.runner import Runner

__all__ = ["restart_all", "take_up"]

log = logging.getLogger(__name__)


def take_up(runner: Runner, config: RunnerConfig, checked: Checked, change: Reshape) -> None:
    """Take up ``config`` stopping only the shard workers it concerns (docs/concepts/
    reload.md). Those of a removed or renamed table, and those reading a removed or
    changed region, are dropped as a balancing hand-over drops them: no write starts
    after the drop, the page out ends, then the lease is released (or left to expire
    if that page outlived the deadline). The others keep their threads and pages: a
    removed target leaves them at their next step, an added one joins them from the
    positions add-region seeded; their next pages go through replicators of the new
    configuration, and those they started with close after their last page."""
    gone = {*change.removed, *change.changed}
    log.info(
        "config changed: starting and stopping only the pairs it concerns",
        extra={"added": list(change.added), "removed": sorted(gone)},
    )
    dropped = [
        ref
        for ref, owned in runner.owned.items()
        if ref.table in change.stale_tables or owned.region in gone
    ]
    runner.held.drop_all(dropped, release=True)  # through the old stores: they hold the tokens
    runner.held.remove_targets(change.removed)
    for name in list(runner.shards):
        kept = {r: p for r, p in runner.shards[name].items() if r.table not in change.stale_tables}
        runner.shards[name] = kept
        if name in gone:
            del runner.shards[name]  # discovered again through the new clients
    runner.config = config
    # A shard read to its end for the old regions is not finished for an added one.
    runner.finished.clear()
    runner._take(checked)
    regions = runner._regions(config)  # clients only: no request is made
    for name, kept_region in runner.regions.items():
        assert isinstance(kept_region.replicator, Replaceable)
        if name in gone:
            kept_region.replicator.retire()  # after its last page (none: dropped)
            continue
        fresh = regions[name]
        assert isinstance(fresh.replicator, Replaceable)
        kept_region.replicator.replace(fresh.replicator.current)
        # The kept stores hold the tokens of the leases we keep; the stream client is the
        # new one (it reads a renamed table under its new name).
        regions[name] = dataclasses.replace(
            fresh,
            state=kept_region.state,
            leases=kept_region.leases,
            replicator=kept_region.replicator,
        )
    runner.regions = regions
    runner.keeper.stores = lease_stores(regions)
    for name in (*change.changed, *change.added):
        # Claimed again through its new store: an added region may come back with another
        # state table than the one our old claim is in.
        runner.keeper.forget_claim(name)
    runner.held.add_targets(change.added)


def restart_all(runner: Runner, config: RunnerConfig, checked: Checked) -> None:
    """Take up ``config`` restarting every shard worker from its checkpoint. The leases
    are kept where the stores are the same (same state table, same region spec): they
    hold the tokens, so the next round takes the shards again at once (but for one whose
    page outlived its deadline: its lease is left to expire first)."""
    log.info(
        "config changed: restarting shard workers",
        extra={"regions": [r.name for r in config.regions]},
    )
    # Not due for release: the next round takes them again (``settle_kept``).
    runner.held.drop_all(runner.owned, release=False, keep=True)
    for region in runner.regions.values():
        region.replicator.close()
    if config.replication.conflict_log != runner.config.replication.conflict_log:
        if runner.conflict_log is not None:
            runner.conflict_log.close()
        runner.conflict_log = open_conflict_log(config.replication.conflict_log)
    old, same_table = runner.regions, config.state_table == runner.config.state_table
    runner.config = config
    runner._take(checked)
    runner.keeper.lease_seconds = config.lease_timeout_seconds  # new leases only
    runner.finished.clear()
    runner.shards.clear()
    regions = runner._regions(config)
    for name, region in regions.items():
        kept = old.get(name)
        if same_table and kept is not None and kept.spec == region.spec:
            # The same stores: they hold the tokens of the leases we keep.
            regions[name] = dataclasses.replace(region, state=kept.state, leases=kept.leases)
        else:  # another store (or a new region): claim the id in it before a lease there
            runner.keeper.forget_claim(name)
    runner.regions = regions
    runner.keeper.stores = lease_stores(regions)
    if not same_table:  # our claims are in the old table: claim the id there first
        runner.keeper.reset_claims()
