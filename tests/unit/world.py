"""A world of regions for convergence tests: in-memory stores, the real write protocol and
planner, and a schedule of faults that slip in between any two store calls.

Faults, chosen by ``next_action`` before each store call (and after each applied write):
another replicator delivers a pending write into that region meanwhile (another source
region's worker, or a new lease holder taking over), a zombie worker replays a write
delivered long ago, the application writes or deletes in that region (its stream record
goes through the planner), the call is throttled, or a write is applied but its answer is
lost. Deliveries are batches of one region's pending writes, several keys and several
writes per key, as the shard worker hands them over; what a batch reports as failed is
delivered again later, as the stream would. An application's change is planned when it is
delivered, once for all its targets, with the source's tombstones as they are then; the
targets where it failed get it again, planned anew, as the runner and Lambda do.

Timestamps collide: the drawn writes share timestamps across regions and, with different
stream sequence numbers, within one region (two contents of one timestamp and region);
an application write takes its timestamp from a small range, so it often lands exactly
on the timestamp of the replica it updates, keeping the marker (an UpdateItem keeps the
replicator's attributes). Application writes are decoded from stream records by the real
codec. Every write carries its own content, and ``check`` compares content, not labels.
One corner is left out on purpose (see core.writes, "Known limit"): an application write
in region R at the timestamp of another write of R's own while a delete of that other
write arrives from elsewhere; application writes in R avoid the timestamps of drawn R
versions.

Items carry a residency attribute (``country``, ruled by ``RULE``, part of each write's
content) when the world has a rule: every write is projected onto its scope
(``core.scoping``), the application writes in regions inside and outside its items'
scopes, and updates move items between scopes. The application never deletes, in its own
region, a write it made outside that write's scope: that delete may race the replicator's
removal of the write and is then lost (the
docs say so: a contract violation has this one gap). An application delete of content its
region is already removing (it remembers the delete that keeps a later version out) is
taken for that removal, as documented: it deletes nothing elsewhere (``_removal_pending``);
so is one whose covering delete lands in its region only after it, but before its record is
planned (``_raced``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.codec import decode_record
from dynamodb_replicator.core.errors import ReplicatorError, ThrottledError, UnreachableError
from dynamodb_replicator.core.model import Change, Item, ItemKey, Tombstone, Version, parse_number
from dynamodb_replicator.core.plan import DeleteVersion, Plan, PutVersion, WriteOp, plan_changes
from dynamodb_replicator.core.policy import LATEST, ConflictPolicy, newer
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.scoping import project
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

TABLE = "T"
SUFFIX = ".__tombstones"
KEYS = tuple(ItemKey.from_attributes({"pk": {"S": f"k{n}"}}) for n in range(3))
NOTHING, DELIVER, APP_WRITE, APP_DELETE, LOSE_ANSWER, THROTTLE, ZOMBIE = range(7)
ACTIONS = (NOTHING, DELIVER, APP_WRITE, APP_DELETE, LOSE_ANSWER, THROTTLE, ZOMBIE)
# Faults that make a call fail are bounded, so every batch finishes within its retries
# most of the time; a batch that still fails is delivered again.
MAX_FAILURES = 6

# Items with country DE may live in eu-west-1 only, US items in us-east-1 and us-west-2,
# items of any other country or none everywhere.
RULE = ResidencyRule(
    "country",
    (("DE", frozenset({"eu-west-1"})), ("US", frozenset({"us-east-1", "us-west-2"}))),
)
COUNTRIES = ("DE", "US", None)

__all__ = ["ACTIONS", "COUNTRIES", "KEYS", "NOTHING", "RULE", "World"]


def _writer(store: MemoryStore, policy: ConflictPolicy, prefetch: bool) -> StoreWriter:
    protocol = WriteProtocol(
        store, policy, FIELDS, ManualClock(1_000_000.0), SUFFIX, 3600, prefetch
    )
    options = WriterOptions(max_in_flight=1, backoff=Backoff(attempts=4, base=0.0))
    return StoreWriter(protocol, options)


Country = str | None


def content_of(version: Version) -> str:
    """The content of a drawn write: one version, one content. By the timestamp's value,
    not its spelling: ``0`` and ``0E0`` drawn for one origin and seq are one version."""
    return f"{version.timestamp.normalize()}@{version.origin}#{version.seq}"


def image(
    key: ItemKey, version: Version, content: str | None = None, country: Country = None
) -> Item:
    found = {
        **key.to_attributes(),
        FIELDS.timestamp: {"N": version.raw_timestamp},
        "c": {"S": content or content_of(version)},
    }
    return found if country is None else found | {"country": {"S": country}}


def country_of(item: Item) -> Country:
    """The residency attribute an item carries (None: none)."""
    held = item.get("country")
    return None if held is None else str(held["S"])


def _record(key: ItemKey, seq: str, old: Item | None, new: Item | None) -> dict[str, Any]:
    body: dict[str, Any] = {"Keys": key.to_attributes(), "SequenceNumber": seq}
    if old is not None:
        body["OldImage"] = dict(old)
    if new is not None:
        body["NewImage"] = dict(new)
    event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    return {"eventName": event, "dynamodb": body}


@dataclass(frozen=True)
class Record:
    """An application's change in ``source``'s stream, planned when delivered, once for all
    its ``targets`` (as a shard worker plans a page for the targets of a cursor)."""

    source: str
    change: Change
    targets: tuple[str, ...]

    @property
    def sequence_number(self) -> str:
        return self.change.sequence_number


Pending = WriteOp | Record
Entry = tuple[str, Version, str, Country]  # (put or delete, version, content, country)


@dataclass
class World:
    """Regions, the writes still to deliver, and every version written or deleted per key."""

    policy: ConflictPolicy
    names: list[str]
    next_action: Callable[[], int]
    prefetch: bool = True
    rule: ResidencyRule | None = None
    stores: dict[str, MemoryStore] = field(default_factory=dict)
    writers: dict[str, StoreWriter] = field(default_factory=dict)
    concurrent: dict[str, StoreWriter] = field(default_factory=dict)
    pending: list[tuple[str, Pending]] = field(default_factory=list)
    delivered: list[tuple[str, WriteOp]] = field(default_factory=list)
    # (put or delete, version, content, country) of every write
    history: dict[ItemKey, list[Entry]] = field(default_factory=dict)
    countries: dict[Version, Country] = field(default_factory=dict)  # of each drawn put
    # (region, content) of application writes made outside their scope (see the docstring)
    outside: set[tuple[str, str]] = field(default_factory=set)
    # Application deletes not yet planned, by (region, record seq): the history entry and
    # the delete the region remembered when the application deleted (``_raced``).
    unplanned: dict[tuple[str, str], tuple[Entry, Tombstone | None]] = field(default_factory=dict)
    # Drawn versions' seqs are small: the world's own records come after them in any stream.
    sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    nested: bool = False
    failures: int = 0

    def __post_init__(self) -> None:
        for name in self.names:
            store = MemoryStore(name, before_call=self._before, after_apply=self._after)
            self.stores[name] = store
            self.writers[name] = _writer(store, self.policy, self.prefetch)
            self.concurrent[name] = _writer(store, self.policy, self.prefetch)

    def close(self) -> None:
        for writer in [*self.writers.values(), *self.concurrent.values()]:
            writer.close()

    def seq(self) -> str:
        return str(next(self.sequence))

    def happened(
        self, kind: str, key: ItemKey, version: Version, content: str = "", country: Country = None
    ) -> None:
        entry = (kind, version, content or content_of(version), country)
        self.history.setdefault(key, []).append(entry)

    def event(
        self, kind: str, key: ItemKey, version: Version, deleted_in: str, country: str | None = None
    ) -> WriteOp:
        """A put or delete of another region's application, to deliver everywhere. A put
        of a key put before is an update of it (the write protocol tries P1u first). One
        version is one write: a version put again keeps the country it was put with."""
        earlier = [v for k, v, _, _ in self.history.get(key, []) if k == "put"]
        if kind == "delete" and (deleted_in != version.origin or not version.seq):
            # As the codec decodes it: a delete of another region's version; or as a
            # tombstone of the earlier scheme (no seq) reads: every content of (T, O).
            version = Version.of(version.raw_timestamp, version.origin, LATEST)
        if kind == "put":
            country = self.countries.setdefault(version, country)
        self.happened(kind, key, version, country=country if kind == "put" else None)
        if kind == "put":
            replaces = earlier[-1] if earlier else None
            put = image(key, version, country=country)
            return PutVersion(key, version, put, self.seq(), replaces)
        return DeleteVersion(key, version, deleted_in, self.seq())

    def spread(self, op: WriteOp) -> list[tuple[str, WriteOp]]:
        """``op`` for every region, projected onto its scope as the origin's planner does."""
        origin = op.version.origin if isinstance(op, PutVersion) else ""
        plan = Plan({name: [op] for name in self.names})
        writes = project(plan, [], rule=self.rule, source=origin).writes
        return [(name, written) for name in self.names for written in writes[name]]

    def deliver(self, region: str, ops: list[WriteOp], *, concurrently: bool = False) -> None:
        """One batch into ``region``; what it reports as failed is delivered again later."""
        writers = self.concurrent if concurrently else self.writers
        result = writers[region].apply(TABLE, ops)
        self.delivered.extend((region, op) for op in ops)
        failed = result.failed_sequence
        if failed is not None:
            again = [op for op in ops if int(op.sequence_number) >= int(failed)]
            self.pending.extend((region, op) for op in again)

    def deliver_record(self, record: Record, *, concurrently: bool = False) -> None:
        """Plan ``record`` once for its targets and apply it to each; the targets where it
        failed get it again later."""
        source = self.stores[record.source]
        try:
            tombs = TombstoneTable(source, FIELDS, SUFFIX).read(TABLE, [record.change.key])
        except ReplicatorError:  # the source's tombstones could not be read: all again
            self.pending.append(("", record))
            return
        plan = plan_changes(
            [record.change],
            source=record.source,
            regions=record.targets,
            policy=self.policy,
            fields=FIELDS,
            tombstones=tombs,
        )
        self._raced(record, tombs.get(record.change.key), plan.echoes)
        writes = project(plan, [record.change], rule=self.rule, source=record.source).writes
        writers = self.concurrent if concurrently else self.writers
        failed = tuple(
            target
            for target in record.targets
            if writers[target].apply(TABLE, writes[target]).failed_sequence is not None
        )
        if failed:
            self.pending.append(("", Record(record.source, record.change, failed)))

    def run(self, batch_size: Callable[[], int]) -> None:
        """Deliver everything pending, a batch of one region's writes at a time."""
        while self.pending:
            region, first = self.pending.pop(0)
            if isinstance(first, Record):
                self.deliver_record(first)
                continue
            batch = [first, *self._take(region, batch_size() - 1)]
            # A shard's batch is in stream order: the writer resumes from the lowest failure.
            self.deliver(region, sorted(batch, key=lambda op: int(op.sequence_number)))

    def _take(self, region: str, count: int) -> list[WriteOp]:
        """Up to ``count`` more pending writes into ``region``, in stream order."""
        taken: list[WriteOp] = []
        for entry in list(self.pending):
            if len(taken) >= count:
                break
            if entry[0] == region and not isinstance(entry[1], Record):
                self.pending.remove(entry)
                taken.append(entry[1])
        return taken

    def check(self) -> None:
        """Every region holds every key's winner, its content (country included) where the
        winner's scope includes the region, and nothing elsewhere; nothing deleted came
        back."""
        for key, events in self.history.items():
            # The seq again, outside the policy: a policy that drops it must fail here.
            best = max(
                events, key=lambda e: (self.policy.order_key(e[1]), e[1].seq, e[0] == "delete")
            )
            winner = None if best[0] == "delete" else best
            for name, store in self.stores.items():
                held = store.item(TABLE, key)
                if winner is None:
                    assert held is None, f"{name} resurrected {key}: {held}"
                elif not self.allows(name, winner[3]):
                    assert held is None, f"{name} holds {key} outside its scope: {held}"
                else:
                    assert held is not None, (name, key, "lost", winner)
                    got = (
                        parse_number(held[FIELDS.timestamp]["N"]),
                        held["c"]["S"],
                        country_of(held),
                    )
                    want = (winner[1].timestamp, winner[2], winner[3])
                    assert got == want, (name, key, held, winner)

    def allows(self, region: str, country: Country) -> bool:
        """May an item of ``country`` live in ``region``?"""
        if self.rule is None:
            return True
        return self.rule.allows(image(KEYS[0], Version.of("0", region), country=country), region)

    def _before(self, store: MemoryStore, _call: str) -> None:
        if self.nested:
            return
        action = self.next_action()
        if action == THROTTLE and self.failures < MAX_FAILURES:
            self.failures += 1
            raise ThrottledError("throttled", region=store.name)
        self.nested = True
        try:
            if action == DELIVER and self.pending:
                # Another worker takes a record, or a few of one region's pending writes.
                region, first = self.pending.pop(0)
                if isinstance(first, Record):
                    self.deliver_record(first, concurrently=True)
                else:
                    more = self._take(region, self.failures % 4)
                    batch = sorted([first, *more], key=lambda op: int(op.sequence_number))
                    self.deliver(region, batch, concurrently=True)
            elif action == ZOMBIE and self.delivered:
                region, op = self.delivered[len(self.delivered) // 2]
                self.deliver(region, [op], concurrently=True)
            elif action in (APP_WRITE, APP_DELETE):
                key = KEYS[self.failures % len(KEYS)]
                self.application(store.name, key, delete=action == APP_DELETE)
        finally:
            self.nested = False

    def _after(self, _store: MemoryStore, _call: str) -> None:
        if self.nested or self.failures >= MAX_FAILURES:
            return
        if self.next_action() == LOSE_ANSWER:
            self.failures += 1
            raise UnreachableError("answer lost after the write was applied")

    def application(self, region: str, key: ItemKey, *, delete: bool) -> None:
        """An application write or delete of ``key`` in ``region``; its stream record is
        decoded by the real codec and planned by the real planner, and the writes it asks
        for are delivered later. A write is an UpdateItem (the replicator's attributes
        kept) or a PutItem, at a timestamp of a small range: often exactly a replica's."""
        store = self.stores[region]
        old = store.item(TABLE, key)
        seq = self.seq()
        if delete:
            if old is None or self._written_outside(region, old):
                return
            store.write_directly(TABLE, key, None)
            new = None
        else:
            stamp = self._stamp(region, key)
            written = {FIELDS.timestamp: {"N": stamp}, "c": {"S": f"app{seq}"}}
            base = dict(old) if old is not None and int(seq) % 2 else key.to_attributes()
            new = {**base, **written}
            country = COUNTRIES[int(seq) // 2 % len(COUNTRIES)] if self.rule else None
            if country is not None:  # an update may move the item to another scope
                new["country"] = {"S": country}
            store.write_directly(TABLE, key, new)
        change = decode_record(
            _record(key, seq, old, new), source_region=region, fields=FIELDS, from_json=False
        )
        if change.version is None:
            return
        if new is None and self._removal_pending(region, change):
            # Taken for the replicator's removal (docs/operating/residency.md): the region
            # was told to remove this content already; the delete reaches nothing else.
            self.pending.append(("", Record(region, change, tuple(self.names))))
            return
        kind = "delete" if new is None else "put"
        content = "" if new is None else new["c"]["S"]
        if new is None and old is not None:
            content = old["c"]["S"]
        country = None if new is None else country_of(new)
        if new is not None and not self.allows(region, country):
            self.outside.add((region, content))
        self.happened(kind, key, change.version, content, country)
        if new is None:
            tomb = TombstoneTable(store, FIELDS, SUFFIX).read(TABLE, [key]).get(key)
            self.unplanned[(region, seq)] = (self.history[key][-1], tomb)
        self.pending.append(("", Record(region, change, tuple(self.names))))

    def _raced(self, record: Record, tomb: Tombstone | None, echoes: int) -> None:
        """The known race (docs/concepts/guarantees.md, tests/unit/test_delete_racing_a_
        covering_delete.py): a delete or removal covering the content an application delete
        removed landed in its region after that delete and before its record was first
        planned. The record then equals the replicator's own removal, is taken for it and
        deletes nothing elsewhere (as ``_removal_pending``, judged later). Only then is the
        delete taken out of the history: a record dropped as an echo while the remembered
        delete is the one the application's delete met still fails ``check``."""
        entry = self.unplanned.pop((record.source, record.sequence_number), None)
        if entry is None or not echoes:
            return
        happened, before = entry
        removed = record.change.old_version or record.change.version
        # The new delete must cover what the application's delete removed: a stale delete
        # of an older version landing meanwhile is no removal of it, and excusing the
        # record then would pass a planner that drops deletes it does not cover.
        if tomb is not None and tomb != before and not newer(self.policy, removed, tomb.version):
            self.history[record.change.key].remove(happened)

    def _removal_pending(self, region: str, change: Change) -> bool:
        """Does ``region`` remember, for a later version kept out of it by its scope, a
        delete that covers the content ``change`` removed (the replicator is removing that
        content there)? The two REMOVE records are alike. (A remembered delete that
        happened covers the content anyway.)"""
        tomb = TombstoneTable(self.stores[region], FIELDS, SUFFIX).read(TABLE, [change.key])
        found = tomb.get(change.key)
        if found is None or found.deleted_in == region:
            return False
        deletes = {v for k, v, _, _ in self.history.get(change.key, []) if k == "delete"}
        removed = change.old_version or change.version
        return found.version not in deletes and not newer(self.policy, removed, found.version)

    def _written_outside(self, region: str, item: Item) -> bool:
        """Is ``item`` a write the application made in ``region`` outside its scope (see
        the docstring)?"""
        return (region, item["c"]["S"]) in self.outside

    def _stamp(self, region: str, key: ItemKey) -> str:
        """A timestamp that collides often, never with a drawn write of ``region`` itself
        (the corner left out, see the module docstring)."""
        own = {v.raw_timestamp for _, v, _, _ in self.history.get(key, []) if v.origin == region}
        for tried in range(9):
            stamp = str((self.next_action() + tried) % 9)
            if stamp not in own:
                return stamp
        return f"{next(self.sequence)}.5"  # all taken: a fresh one
