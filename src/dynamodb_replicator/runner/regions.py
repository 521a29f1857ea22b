"""What the runner holds for one source region, and how it applies a page to the targets.

A page goes only to the targets that are reachable; for a target that is down, the page
fails at its first record without a request being made, so its cursor waits (and keeps its
checkpoint) while the other targets read on. No write starts after the deadline the caller
gives: the shard's lease expiry less a margin.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from dynamodb_replicator.aws.clients import make_client, region_session
from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.aws.lean import make_lean_client
from dynamodb_replicator.aws.parked import DynamoParkingLot
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.parking import ParkingLot
from dynamodb_replicator.core.ports import ConflictLog, Deadline, TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import CheckpointStore, Shard, ShardRef, StreamSource
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.reachability import Reachability

__all__ = ["Coordination", "Region", "Replicating", "Streams", "apply_page"]


class Streams(StreamSource, Protocol):
    """A region's streams: the tables' stream ARNs, their shards, and reading them."""

    def stream_arns(self, table: str) -> list[str]: ...

    def shards(self, arn: str) -> list[Shard]: ...


class Coordination(CheckpointStore, Protocol):
    """A region's state table as the runner uses it: leases, live workers, reports.

    ``order`` (renewals and heartbeats): the request's place in the count of those the
    process sent; the table applies a lease's renewals and a claim's heartbeats in that
    order (one landing after a later one is refused), not by their expiries."""

    def heartbeat(
        self,
        worker: str,
        expires_ms: int,
        unreachable: Mapping[str, tuple[float, str]] | None = None,
        *,
        instance: str = "",
        now_ms: int = 0,
        replacing: str = "",
        margin_ms: int = 0,
        order: int,
    ) -> None: ...

    def live_workers(self, now_ms: int) -> list[str]: ...

    def forget_worker(self, worker: str, *, instance: str, order: int) -> None: ...

    def acquire(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, inherit: bool = False
    ) -> bool: ...

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool: ...

    def release(self, shard: ShardRef, owner: str) -> None: ...

    def put(self, item: Mapping[str, Any]) -> None: ...


class Replicating(Protocol):
    """The Replicator as the runner calls it."""

    def process(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        *,
        from_json: bool,
        regions: Collection[str] | None = None,
        deadline: Deadline = None,
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult: ...

    def close(self) -> None: ...


@dataclasses.dataclass(slots=True)
class Region:
    """Everything the runner holds for one source region."""

    spec: RegionSpec
    streams: Streams
    state: Coordination
    replicator: Replicating
    parking: ParkingLot
    # The state table again, through a client of its own: lease renewals wait behind no
    # checkpoint save or report (None: ``state`` serves both).
    leases: Coordination | None = None

    @classmethod
    def connect(
        cls,
        spec: RegionSpec,
        config: RunnerConfig,
        stopping: threading.Event,
        conflict_log: ConflictLog | None,
    ) -> Region:
        """The region's clients (no request is made), each request bounded by the config's
        request timeout (shorter than the lease margin: fencing by time)."""
        timeout = config.request_timeout
        shared = SharedSessions(timeout)
        client = functools.partial(shared.make, make_client, region=spec, timeout=timeout)
        lean = functools.partial(shared.make, make_lean_client, region=spec, timeout=timeout)
        settings = dataclasses.replace(config.replication, request_timeout_seconds=timeout)
        # Checkpoints (one per page) and heartbeats on the lean transport (``aws.lean``);
        # scans of the state table go to botocore through the same client.
        state = DynamoStateStore(lean("dynamodb"), config.state_table, spec.name, stop=stopping)
        return cls(
            spec,
            StreamClient(
                spec.name,
                client("dynamodb"),
                lean("dynamodbstreams"),
                config.replication.names,
            ),
            state,
            build_replicator(
                spec,
                config.regions,
                settings,
                stop=stopping,
                conflict_log=conflict_log,
                make=functools.partial(shared.make, make_lean_client),
                # The next page's writes do not wait out a lost answer of this one.
                written_before_wait=True,
            ),
            DynamoParkingLot(client("dynamodb"), config.state_table, spec.name),
            # One attempt per renewal: the keeper tries again at its next tick.
            state.sibling(client("dynamodb", pool=2), Backoff(attempts=1)),
        )


class SharedSessions:
    """One session per region for the clients of one ``Region.connect`` (nine of them, to
    three regions): making a session costs about as much CPU as the client (botocore
    registers its thousands of event handlers anew), and a restarted runner starts under
    load. Sessions are not thread-safe, the clients they make are: these are made on the
    connecting thread only. A region with a role shares its refreshing credentials too."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout  # of a role's STS request, as the clients' own
        self.sessions: dict[str, Any] = {}

    def make(
        self, maker: Callable[..., Any], service: str, region: RegionSpec, **kwargs: Any
    ) -> Any:
        """``maker(service, region, **kwargs)`` (``make_client`` or ``make_lean_client``),
        with the region's shared session."""
        session = self.sessions.get(region.name)
        if session is None:
            session = self.sessions[region.name] = region_session(region, timeout=self.timeout)
        return maker(service, region, session=session, **kwargs)


def apply_page(
    region: Region,
    reach: Reachability,
    page: tuple[str, Sequence[Mapping[str, Any]]],
    targets: Collection[str],
    deadline: Deadline,
    *,
    logged: Callable[[Conflict], bool] | None = None,
    written: Callable[[], None] | None = None,
    ready: Callable[[], None] | None = None,
) -> BatchResult:
    """Apply one page of ``region``'s stream (table, records) to the reachable ``targets``;
    the down ones fail at the first record, untried. ``written`` and ``ready``: see
    ``Replicator.process``."""
    table, records = page
    up = [t for t in targets if reach.is_up(t)]
    if not up:
        if written is not None:
            written()
        result = BatchResult({}, records=len(records))
    else:
        result = region.replicator.process(
            table,
            records,
            from_json=False,
            regions=up,
            deadline=deadline,
            logged=logged,
            written=written,
            ready=ready,
        )
    down = [t for t in targets if t not in up]
    if not down or not records:
        return result
    first = str(records[0]["dynamodb"]["SequenceNumber"])
    waiting = {
        t: TargetResult(
            t, failed_sequence=first, error=UnreachableError(f"{t} is unreachable", region=t)
        )
        for t in down
    }
    return dataclasses.replace(result, targets={**result.targets, **waiting})
