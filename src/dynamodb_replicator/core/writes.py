"""The write protocol: how one region applies a replicated put or delete, without transactions.

Every write is a single-item conditional write (1 write unit); the tombstone table is read,
never locked. The protocol decides; the store port (``core.store``) makes one call at a time.

Versions and labels. A version is (``__timestamp``, origin region, seq): seq is the stream
sequence number of the origin record (zero-padded, ``__originSeq``; "" for items of the
earlier scheme, the lowest) and orders two contents of one timestamp and origin (two
writes of one millisecond in one region: the later in that region's stream wins). It is
compared only when timestamp and origin are equal, so only seqs of one stream meet.
A replica write stores the item with ``__originRegion``, ``__originSeq``, the marker
(= ``__timestamp``) and a nonce: a fresh id (``NonceSource``, never repeated) sealed with
the digest of the content written (``core.policy.seal``).
  * Stream: a record is a replica write iff NewImage carries the marker and its nonce
    differs from OldImage's (no NewImage nonce: the earlier scheme, the marker alone). An
    application update keeps the nonce it found, so it is never taken for an echo, and
    its version is (its timestamp, the stream's region, the record's seq), whatever labels
    it kept (``core.codec``).
  * OldImage: replica content iff marked and the seal matches its content
    (``is_genuine``); an application update that kept or hit the marker changed the
    content, so it reads as content of the stream's region.
  * Stored item, as conditions read it: marked (marker = ``__timestamp``, and an origin
    stored, as ``is_marked`` reads it) -> its labels; unmarked -> content written
    in the holder H, seq ``LATEST`` (above all): a copy of a version of H arriving in H
    was written before the item H holds now, the last write of that key in H's stream.
    Conditions cannot check the seal, so an item whose application update hit the marker
    exactly ("disguised") reads with the replica's labels; two clauses cover it (below).
  * A delete of another region's version is a delete of (T, O, ``LATEST``): the deleting
    region cannot tell which content of (T, O) it removed, so it removes all of them. A
    delete in the origin region itself carries its own record's seq, whichever copy of
    its version it removed (own content, a restore, a copy of the earlier scheme without
    a seq; ``core.codec``): it covers every content of T written there before it, and
    what that region writes at T after the delete survives it. No delete carries a seq
    of "", which a tombstone would read back as the earlier scheme's. The REMOVE record
    of the replicator's own D2/P3 is an echo when the labels of the content it removed
    are covered by the remembered delete (``core.plan``; not the version the record
    would carry: else it would go out as a delete of every content of (T, O), or in O,
    applying O's own delete, as O's delete at that later record; either removes a later
    re-insert of T in O). In O that delete's own record, replayed, is no echo: only a
    removal at a later record than the remembered delete of O's version is. A tombstone
    of the earlier scheme (no seq) remembers a delete of (T, O) whatever its content: it
    reads as (T, O, ``LATEST``) (``core.tombstones``).

Put of version V of key K (the item plus the labels and a fresh nonce):
  P0. (batched, before the writes) read K's tombstone; if it remembers a delete of V or a
      newer version, the put is stale: no write (the common case of a late delivery after
      a delete shows no resurrected item, and costs no write).
  P1. put the item where the stored one is absent, unversioned, older than V, or V itself
      (strict puts, the restores: not V itself). A restore that a losing application
      update asked for also replaces an item that still carries the nonce of the replica
      write that update kept and that, read as the holder's own content, is older than V
      (``supersedes``): such an item can only be that update or a later application
      update of the same replica write, all content of the holder (nonces never repeat).
  An update (the source held an older version: the common case, an item that exists in
  every region) skips P0 and tries P1u first: P1 where the item is *present*. P1u cannot
  make a deleted item reappear, so it needs no tombstone read before it; it writes nothing
  when the item is absent (deleted here, or its insert not arrived yet), and the update
  then goes on with P0 (a single read) and P1. A P1u that landed is a P1 that landed:
  everything below holds for it.
  P2. (batched, after the writes) every put, landed or not, reads K's tombstone again;
  P3. if it remembers a delete of a version D >= V, and a read shows an item not newer than
      D, that delete is applied again: delete K where the stored item is not newer than D.
  Until P2 (and P3) succeeded the put counts as failed, so the stream position never moves
  past a put that may still undo a delete: a crash or a give-up replays it, and the replay
  settles even when it writes nothing (P0 refused it, or a newer item was there).
A delete of an item that had no ``__timestamp`` removes the key only where the stored item
has none either: a versioned item is newer than any unversioned one.
Delete of version D of key K:
  D1. put the tombstone of D unless a newer delete is remembered (for the same version, the
      region names of the deletes decide: the larger one is kept, in every region);
  D2. delete K where the stored item is not newer than D. In the region whose application
      deleted the item, D2 is skipped when a read after D1 shows K absent or newer.
  D2s. (repair's deletes only, ``supersedes``: the nonce of a replica write this region's
      application updated keeping the marker, whose kept labels may outrank D) where D2
      found K newer: put the item D2 found, relabelled as this region's own version of its
      timestamp (seq ``LATEST``, as conditions read own content), where the stored item
      still carries that nonce and, read as this region's own, is not newer than D; then
      D2 again. Only this region's application content carries that nonce (nonces never
      repeat), so only such content is replaced, by content the same application wrote,
      and it is removed under labels the stream reads as covered by the tombstone: the
      REMOVE is an echo. Removed as it was, a write-back of the replica's content (genuine
      again) racing repair would read as the replica in the REMOVE record and go out as a
      delete of the replica's version; relabelled, its record reads as a replica write
      going backwards, which restores that version (``core.plan``). It never creates an
      item (the nonce must be stored), so it undoes no delete.

Why no delete is ever undone (no resurrection). Take a delete D1/D2 and a put P1 of V <= D
of the same key in the same region; every read is strongly consistent, tombstones only grow.
  * P1 before D2: D2 sees V (or a newer item written after P1) and removes anything not
    newer than D.
  * P1 after D2: then P1 is after D1, so the P2 of that very put reads a tombstone >= D >= V
    and P3 removes whatever is not newer than D. It does not matter what P1 replaced, nor
    whether another writer's put was there first: every put that lands settles itself.
  * A P1 applied but whose answer was lost, or whose writer crashed before P2: the retry
    or the replay settles, whatever its own P0/P1 found. What replaced the landed put in
    the meantime (a newer put, or an application write over it) is removed by that settling
    if it is not newer than D.
  * The skipped D2 (deleting region): its read is after D1, so a put landing after the read
    is after D1 and settles against D1's tombstone.
  * Every landed put settles, even when a later delete of the same batch ran after it: an
    application write may have replaced the landed put in between, and only settling
    removes that older-than-the-delete write.
  * P0 only saves a write; correctness does not depend on it.
  What this needs from the caller: a writer that stops for good between P1 and P2 must
  leave its records to be replayed, i.e. no other worker may have checkpointed past them.
  The runner keeps that window closed: a shard's pages are written with ``deadline`` = its
  lease's expiry less a margin (core.defaults.LEASE_MARGIN_FRACTION), so no write starts
  after the lease may have passed to another worker, and every request ends within the
  request timeout, shorter than the margin, so none lands after it either (fencing by
  time: runner/leases.py); settling (P2/P3) is held to no deadline, so a writer whose put
  answered late still settles it; a dropped shard's lease is released
  only once its page in flight has ended (else it is left to expire); and only the lease
  holder may save the shard's checkpoints (aws/state.py), so a zombie's late saves cannot
  move the new holder's positions.
Why every region converges: P1 and D2 are the apply rule (``stored_is_older``), evaluated by
DynamoDB atomically; P3 re-applies a delete that happened. Each region therefore ends with
the largest version put or deleted, whatever the order of arrival or the number of replays,
provided one version has one content and every label is true. Equal timestamps:
  * One version, one content. Seqs of one stream are unique, so an application write's
    version names one content. A replica write copies content with its labels. A restore
    of replica content keeps its labels and is only sent when the OldImage is genuine
    (sealed content unchanged), so it carries that version's one content. A restore of
    the region's own content O (a write of T at seq x, replaced by a losing write at
    record r) is labelled (T, S, r): no write of T in S lies between x and r (O was the
    item until r), so no other content of (T, S) is ordered between them, and a later
    write of T in S has a seq > r and beats it. Deletes of that content elsewhere remove
    it (they remove every content of (T, S)).
  * True labels. Application content in its own region is unmarked (the holder's view
    is true) unless the update hit the marker exactly: a disguised item, labelled with
    the replica's version R=(T, U, u) while it is (T, S, x). Its record is an application
    write (nonce kept). If (T, S, x) > R it is sent to every region, S too: in S the
    stored labels read R < (T, S, x), so P1 relabels it (the same content, true labels).
    If it loses, R's content (genuine in that OldImage) is restored everywhere, and in S
    the ``supersedes`` clause replaces the disguised item even though its labels equal R.
    Until the record is applied, S may refuse a version V with R > V > (T, S, x) (or take
    one with (T, S, x) > V > R): the record's put or restore then replaces what S holds
    with the winner of {R, (T, S, x)}, and V's own delivery ends where it belongs
    everywhere else; the winner of all three reaches S by its own delivery or restore.
  * Chains. Later application updates of the same replica write keep the nonce; each
    record's OldImage is then not genuine and reads as S's own content, so no restore
    ever carries a content under another version's labels. A restore asked for by the
    first record of the chain carries ``supersedes`` and replaces any chain member older
    than it that S holds when it is applied (in stream order, before the later records'
    puts), so the content of R is not lost with that OldImage.
Known limits (docs/concepts/guarantees.md, data-contract.md): items of the earlier scheme
(no nonce) keep the earlier rule until the replicator writes them again (an update that
keeps their marker is taken for an echo); a delete made in another region of a version of
(T, O) also removes a later content of (T, O) written in the same millisecond in O; a
disguised item that wins (labels R, true version (T, S, x) > R) is removed in S by a delete
of R, or by S's own earlier delete of T, applied there before its record is (conditions read
R), and that removal then goes out as S's delete
(tests/unit/test_updates_on_a_replicas_timestamp.py).
No condition can close it: the disguised item differs from the replica only in content,
which conditions cannot hash (the seal) nor bound ("no other attribute"); a read first
leaves a window before the delete, and after a lost answer the removed content survives
only in a REMOVE record identical to S's application deleting it (docs/concepts/guarantees.md).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from dynamodb_replicator.core.conditions import (
    And,
    Bound,
    Compare,
    Condition,
    Const,
    Exists,
    Not,
    Or,
    Path,
    Value,
    all_of,
    any_of,
    negate,
)
from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome, overwrote_concurrent
from dynamodb_replicator.core.defaults import tombstone_table
from dynamodb_replicator.core.model import Item, ItemKey, SystemAttributes, Tombstone, Version
from dynamodb_replicator.core.plan import (
    DeleteUnversioned,
    DeleteVersion,
    PutVersion,
    WriteOp,
    user_image,
)
from dynamodb_replicator.core.policy import (
    LATEST,
    ConflictPolicy,
    seal,
    stored_is_unversioned,
    stored_version,
    would_apply,
)
from dynamodb_replicator.core.ports import Clock, CountingNonces, NonceSource
from dynamodb_replicator.core.store import Store, StoreResult
from dynamodb_replicator.core.streams import NO_SEQUENCE
from dynamodb_replicator.core.tombstones import TombstoneTable, tombstone_item

__all__ = ["Outcome", "TakenBack", "WriteProtocol", "Written"]


def _unmarked(condition: Condition, fields: SystemAttributes) -> Condition:
    """``condition`` read as if the stored item carried no marker: the policy's view of
    content the application wrote in the holder (the marker test becomes false)."""
    if isinstance(condition, Bound):  # the policy's condition bound to its values
        condition = condition.tree()
    marked = Compare(Path(fields.marker), "=", Path(fields.timestamp))
    if condition == marked:
        return Const(False)
    if isinstance(condition, And):
        return all_of(*(_unmarked(op, fields) for op in condition.operands))
    if isinstance(condition, Or):
        return any_of(*(_unmarked(op, fields) for op in condition.operands))
    if isinstance(condition, Not):
        return negate(_unmarked(condition.operand, fields))
    return condition


def _update(op: PutVersion) -> bool:
    """A change of an item its source held (not an insert, not a restore): P1u applies."""
    return op.replaces is not None and not op.strict


class Outcome(Enum):
    APPLIED = "applied"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Written:
    """One operation's outcome and the conflict it met."""

    outcome: Outcome
    conflict: Conflict | None = None


@dataclass(frozen=True, slots=True)
class TakenBack:
    """A put that settling removed again: a delete of its version or a newer one was
    remembered."""

    op: PutVersion
    conflict: Conflict


@dataclass(frozen=True, slots=True)
class WriteProtocol:
    """The decisions of one region's writes; one attempt per call (callers retry)."""

    store: Store
    policy: ConflictPolicy
    fields: SystemAttributes
    clock: Clock
    tombstone_suffix: str
    tombstone_ttl_seconds: int
    # P0 saves writes but correctness does not depend on it: tests turn it off to prove so.
    prefetch: bool = True
    # Every replica write stores a fresh nonce (how the stream tells it from an application
    # write); the shell passes the process's source (``dynamodb_replicator.ids``).
    nonces: NonceSource = field(default_factory=CountingNonces)

    @property
    def region(self) -> str:
        return self.store.region

    def tombstones(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Tombstone]:
        """The deletes this region remembers for ``keys`` (one batched, consistent read)."""
        return TombstoneTable(self.store, self.fields, self.tombstone_suffix).read(table, keys)

    def prefetch_keys(self, ops: Iterable[WriteOp]) -> set[ItemKey]:
        """Keys whose tombstone is read before writing (P0): every put's but the updates'
        (they try P1u first)."""
        if not self.prefetch:
            return set()
        return {op.key for op in ops if isinstance(op, PutVersion) and not _update(op)}

    def put(self, table: str, op: PutVersion, known: Tombstone | None = None) -> Written:
        """P0 (with the tombstone read before, if any) and P1."""
        if known is not None and self._deleted(op, known):
            # No write; the put is still settled (an earlier attempt may have landed).
            return Written(Outcome.STALE, self._conflict(op, known.version, deleted=True))
        return self._put_outcome(op, self.store.put(table, self._item(op), self._apply_rule(op)))

    def tries_present_first(self, op: PutVersion) -> bool:
        """Does ``op`` start with P1u (``put_present``) instead of P0 and P1?"""
        return self.prefetch and _update(op)

    def put_present(self, table: str, op: PutVersion) -> Written | None:
        """P1u: P1 where the item is present. None when it is absent (deleted here, or its
        insert not arrived yet): the caller goes on with P0 (``tombstones``) and ``put``,
        each a call of its own, so that no write starts after the caller's deadline."""
        present = Exists(Path(op.key.names()[0]))
        rule = self._apply_rule(op)
        condition: Condition
        if isinstance(rule, Bound):  # the policy's template: the Exists before it, made once
            condition = rule.template.after(present).bind(*rule.values)
        else:
            condition = all_of(present, rule)
        result = self.store.put(table, self._item(op), condition)
        if result.applied or result.item is not None:
            return self._put_outcome(op, result)
        return None

    def _apply_rule(self, op: PutVersion) -> Condition:
        """P1's condition: the stored item is older than ``op``'s version; or it carries
        the nonce ``op`` supersedes, so it is this region's application content (an update
        of that replica write), and read as such it is older than ``op``'s version."""
        older = self.policy.stored_is_older(op.version, self.region, strict=op.strict)
        if op.supersedes is None:
            return older
        return any_of(older, self._superseded(op.supersedes, older))

    def _superseded(self, nonce: str, condition: Condition) -> Condition:
        """The stored item carries ``nonce`` (this region's application content, an update
        of that replica write) and, read as this region's own content, ``condition``."""
        same_nonce = Compare(Path(self.fields.nonce), "=", Value({"S": nonce}))
        return all_of(same_nonce, _unmarked(condition, self.fields))

    def _item(self, op: PutVersion) -> Item:
        item = dict(op.image)
        item[self.fields.origin] = {"S": op.version.origin}
        item[self.fields.marker] = {"N": op.version.raw_timestamp}
        sealed = seal(self.nonces.nonce(), op.image, self.fields, digested=op.digest(self.fields))
        item[self.fields.nonce] = {"S": sealed}
        if op.version.seq:
            item[self.fields.origin_seq] = {"S": op.version.seq}
        return item

    def _put_outcome(self, op: PutVersion, result: StoreResult) -> Written:
        held = stored_version(result.item, self.region, self.fields)
        if not result.applied:
            # A strict put (a restore) finding its own version finds itself: no conflict.
            conflict = None if held == op.version else self._conflict(op, held, item=result.item)
            return Written(Outcome.STALE, conflict)
        conflict = None
        if overwrote_concurrent(self.policy, held, op.version, op.replaces):
            conflict = self._conflict(op, held, item=result.item, outcome=ConflictOutcome.WON)
        return Written(Outcome.APPLIED, conflict)

    def delete(self, table: str, op: DeleteVersion) -> Written:
        """D1 and D2 (D2 skipped in the deleting region when a read shows nothing to do),
        and D2s where D2 was refused and ``op`` supersedes a nonce."""
        expires = int(self.clock.now()) + self.tombstone_ttl_seconds
        tomb = tombstone_item(op.key, op.version, op.deleted_in, expires, self.fields)
        not_newer = self._not_newer(op.version)
        # A failed condition: a newer delete is remembered already, or the same version
        # deleted in a region whose name is not smaller; nothing to record.
        self.store.put(tombstone_table(table, self.tombstone_suffix), tomb, self._remember(op))
        if op.deleted_in == self.region:
            current = self.store.get(table, [op.key]).get(op.key)
            if current is None:
                return Written(Outcome.APPLIED)
            if not not_newer.evaluate(current):
                return self._superseding(table, op, current)
        result = self.store.delete(table, op.key, not_newer)
        if result.applied:
            return Written(Outcome.APPLIED)
        return self._superseding(table, op, result.item)

    def _superseding(self, table: str, op: DeleteVersion, held: Item | None) -> Written:
        """D2s, after D2 found ``held`` newer than ``op``'s version: where the stored item
        still carries the nonce ``op`` supersedes and, read as this region's own content,
        is not newer, relabel it as that (a replica write: its record is an echo), then
        remove it; else the delete is stale."""
        refused = Written(Outcome.STALE, self._delete_conflict(op, held))
        if op.supersedes is None or held is None:
            return refused
        not_newer = self._not_newer(op.version)
        relabel = self._superseded(op.supersedes, not_newer)
        if not self.store.put(table, self._as_own(op.key, held), relabel).applied:
            return refused
        removed = self.store.delete(table, op.key, not_newer)
        return Written(Outcome.APPLIED) if removed.applied else refused

    def _as_own(self, key: ItemKey, held: Item) -> Item:
        """``held`` (versioned: D2 refused it) as a replica write of this region's own
        version of its timestamp, labelled as the conditions read this region's own
        content (seq ``LATEST``), so every write orders it as it ordered that content."""
        image = user_image(held, self.fields)
        own = Version.of(str(image[self.fields.timestamp]["N"]), self.region, LATEST)
        return self._item(PutVersion(key, own, image, NO_SEQUENCE))

    def delete_unversioned(self, table: str, op: DeleteUnversioned) -> Written:
        """Remove the item where it has no version either (1 write, no tombstone)."""
        condition = stored_is_unversioned(self.fields, op.key.names()[0])
        result = self.store.delete(table, op.key, condition)
        return Written(Outcome.APPLIED if result.applied else Outcome.STALE)

    def settle(self, table: str, puts: Collection[PutVersion]) -> list[TakenBack]:
        """P2 and P3 for every put of a batch, landed or not; the puts removed again."""
        tombs = self.tombstones(table, {op.key for op in puts})
        suspects = {
            key: tomb
            for key, tomb in tombs.items()
            if any(
                op.key == key
                and not would_apply(self.policy, op.version, tomb.version, strict=True)
                for op in puts
            )
        }
        items = self.store.get(table, suspects.keys()) if suspects else {}
        taken: list[TakenBack] = []
        for key, tomb in suspects.items():
            mine = [op for op in puts if op.key == key]
            not_newer = self._not_newer(tomb.version)
            item = items.get(key)
            if item is not None and not_newer.evaluate(item):
                result = self.store.delete(
                    table, key, all_of(Exists(Path(key.names()[0])), not_newer)
                )
                if result.applied:
                    removed = stored_version(result.item, self.region, self.fields)
                    gone = [op for op in mine if op.version == removed]
                else:
                    # Refused, it names what it met: nothing when the item went between
                    # the read and this delete (our own earlier P3 landing late, a
                    # delete): then as when the read found none.
                    gone = [] if result.item is not None else [self._latest(mine)]
            elif item is None:
                # Already removed (by a delete, another writer's settling, or our own P3
                # whose answer was lost): the latest of our puts is what was undone.
                gone = [self._latest(mine)]
            else:
                gone = []
            taken.extend(
                TakenBack(op, self._conflict(op, tomb.version, deleted=True)) for op in gone
            )
        return taken

    def _latest(self, puts: list[PutVersion]) -> PutVersion:
        return max(puts, key=lambda op: self.policy.order_key(op.version))

    def _not_newer(self, deleted: Version) -> Condition:
        """D2's and P3's condition: the stored item is not newer than ``deleted``."""
        return self.policy.stored_is_older(deleted, self.region, strict=False)

    def _remember(self, op: DeleteVersion) -> Condition:
        """D1's condition: the remembered delete is older, or of the same version deleted
        in a region of a smaller name. When several regions delete one version, every
        region's tombstone then names the same one of them, whose own stream record is
        never taken for an echo (see ``core.plan``), so it reaches every region."""
        older = self.policy.stored_is_older(op.version, self.region, strict=True)
        same = self.policy.stored_is_older(op.version, self.region, strict=False)
        smaller = Compare(Path(self.fields.deleted_in), "<", Value({"S": op.deleted_in}))
        return any_of(older, all_of(same, smaller))

    def _deleted(self, op: PutVersion, tomb: Tombstone) -> bool:
        """Does ``tomb`` remember a delete of ``op``'s version or a newer one?"""
        return not would_apply(self.policy, op.version, tomb.version, strict=True)

    def _delete_conflict(self, op: DeleteVersion, held: Item | None) -> Conflict:
        return self._conflict(op, stored_version(held, self.region, self.fields), item=held)

    def _conflict(
        self,
        op: PutVersion | DeleteVersion,
        other: Version | None,
        *,
        item: Item | None = None,
        deleted: bool = False,
        outcome: ConflictOutcome = ConflictOutcome.LOST,
    ) -> Conflict:
        return Conflict(
            outcome,
            op.key,
            self.region,
            "put" if isinstance(op, PutVersion) else "delete",
            op.version,
            other,
            op.sequence_number,
            other_deleted=deleted,
            change_item=op.image if isinstance(op, PutVersion) else None,
            other_item=item,
        )
