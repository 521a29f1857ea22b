"""Where replication stands: each source stream's newest record, and whether the runner's
checkpoints (``aws/state.py``) have passed it.

A *mark* records, for one shard, the newest SequenceNumber at the moment it is taken and the
target regions whose checkpoint had not reached it yet. Every change visible in a table
when the mark is taken has a stream record at or before its shard's mark, so once every
mark is passed, the runner has handled (applied, or rejected as stale or as an echo) every
change that was visible then.

DynamoDB Streams does not say which is a shard's newest record; the mark reads the shard
from the lowest checkpoint of its targets to where a read returns no records (the end of a
closed shard, or the tip of an open one). A healthy runner keeps that stretch short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.aws.tables import describe_table
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.model import RegionSpec, TableNames
from dynamodb_replicator.core.streams import END, ShardRef, TrimmedDataError

__all__ = ["Mark", "StreamPositions", "passed"]

_MAX_PAGES = 1000  # per shard and mark: a million records is a runner far behind anyway


def passed(checkpoint: str | None, sequence: str) -> bool:
    """True when a target checkpointed at ``checkpoint`` has handled record ``sequence``."""
    return checkpoint == END or (checkpoint is not None and int(checkpoint) >= int(sequence))


@dataclass(frozen=True, slots=True)
class Mark:
    """One shard's newest record when marked, and the targets that had not reached it."""

    source: str
    shard: ShardRef
    sequence: str
    targets: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.source} -> {', '.join(self.targets)} (shard {self.shard})"


@dataclass(frozen=True, slots=True)
class _Source:
    name: str
    streams: StreamClient
    state: DynamoStateStore | None  # None: this region has no state table


class StreamPositions:
    """Marks and checkpoints of one table, for changes from ``sources`` into ``targets``."""

    def __init__(
        self,
        table: str,
        state_table: str,
        sources: Sequence[RegionSpec],
        targets: Sequence[str],
        names: TableNames | None = None,
    ) -> None:
        self.table, self.targets = table, tuple(targets)
        self.sources = [self._source(spec, state_table, names) for spec in sources]

    @staticmethod
    def _source(spec: RegionSpec, state_table: str, names: TableNames | None) -> _Source:
        client = make_client("dynamodb", spec)
        streams = StreamClient(spec.name, client, make_client("dynamodbstreams", spec), names)
        exists = describe_table(client, state_table, spec.name) is not None
        state = DynamoStateStore(client, state_table, spec.name) if exists else None
        return _Source(spec.name, streams, state)

    def tracked(self) -> bool:
        """True when a runner replicates the table: every source region has a state table
        and some hold checkpoints of the table. (A region just added has none until the
        runner reads its stream; replication on Lambda leaves none anywhere.)"""
        states = [source.state for source in self.sources]
        return all(states) and any(s.checkpoint_items(self.table) for s in states if s)

    def mark(self) -> list[Mark]:
        """A mark of every shard some target has not finished yet (needs ``tracked``)."""
        marks: list[Mark] = []
        for source in self.sources:
            assert source.state is not None
            for arn in source.streams.stream_arns(self.table):
                for shard in source.streams.shards(arn):
                    ref = ShardRef(self.table, arn, shard.shard_id)
                    found = self._mark(source, ref, source.state.load(ref))
                    if found is not None:
                        marks.append(found)
        return marks

    def _mark(self, source: _Source, ref: ShardRef, saved: dict[str, str]) -> Mark | None:
        waiting = [t for t in self.targets if t != source.name and saved.get(t) != END]
        if not waiting:
            return None
        starts = [saved.get(t) for t in waiting]
        start = None if None in starts else min((s for s in starts if s is not None), key=int)
        newest = self._newest(source.streams, ref, start)
        behind = tuple(t for t in waiting if newest and not passed(saved.get(t), newest))
        return Mark(source.name, ref, newest, behind) if newest and behind else None

    @staticmethod
    def _newest(streams: StreamClient, ref: ShardRef, after: str | None) -> str | None:
        """The SequenceNumber of the shard's newest record after ``after`` (None: none)."""
        try:
            iterator: str | None = streams.iterator(ref.stream_arn, ref.shard_id, after)
        except TrimmedDataError:  # the checkpoint is older than the retention
            iterator = streams.iterator(ref.stream_arn, ref.shard_id, None)
        newest = None
        for _ in range(_MAX_PAGES):
            if iterator is None:
                break
            page = streams.read(iterator)
            if not page.records:
                break
            newest = str(page.records[-1]["dynamodb"]["SequenceNumber"])
            iterator = page.next_iterator
        return newest

    def unheld(self, marks: Sequence[Mark]) -> str | None:
        """Why no runner will pass ``marks``: their source regions where no live lease on
        the table's shards is held (None when every one has a holder)."""
        now_ms = int(SystemClock().now() * 1000)
        states = {source.name: source.state for source in self.sources}
        idle = []
        for region in sorted({mark.source for mark in marks}):
            state = states[region]
            assert state is not None
            leases = state.leases()
            if not any(
                shard.split("|", 1)[0] == self.table and expires > now_ms
                for shard, (_, expires) in leases.items()
            ):
                idle.append(region)
        if not idle:
            return None
        return (
            f"no runner holds a lease on {self.table}'s shards in {', '.join(idle)}: "
            "replication is not running there, so waiting cannot settle these keys "
            "(start one: dynamodb-replicator run --config FILE)"
        )

    def behind(self, marks: Sequence[Mark]) -> list[Mark]:
        """The marks whose targets' checkpoints have not all passed them yet."""
        states = {source.name: source.state for source in self.sources}
        left: list[Mark] = []
        for mark in marks:
            state = states[mark.source]
            assert state is not None
            saved = state.load(mark.shard)
            targets = tuple(t for t in mark.targets if not passed(saved.get(t), mark.sequence))
            if targets:
                left.append(Mark(mark.source, mark.shard, mark.sequence, targets))
        return left
