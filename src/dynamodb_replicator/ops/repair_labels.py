"""The versions ``repair`` ranks and writes (``ops.repair``). Pure.

Two things repair reads carry no true seq, and two kinds of tombstone are no delete:

* Content an application wrote in region H (unmarked there) is version (T, H, e), e its
  record's seq in H's stream, which repair cannot see. Its copies are labelled
  (T, H, ``own_seq``): at least every seq of (T, H) known anywhere (above it where that
  content differs, or where it is a remembered delete: both came before the content H holds,
  the last write of the key in H's stream), and at least the lowest real seq. Every such
  seq comes from a record H already wrote, so every later write or delete of T in H (a
  later record) outranks the copies, and no write of T in H still on its way beats them
  unless a later record of it follows. (Not ``LATEST``: that label would outrank H's own
  later delete and write of T, and they would be lost everywhere else.) A stand-in (below)
  of (T, H, s) is no delete: it stands for a put of s, so it bounds the seq from below by
  s itself, not one above it.
* A tombstone written by the residency projection (``core.scoping``) stands for a put
  kept out of a region, not for a delete: ``stand_in`` (told by the region it names,
  when repair reads that one, else by its shape where a rule is configured). Ranked as a
  delete it would remove the very version it stands for from the regions of its scope.
  A put that must pass one (a region of the winner's scope that remembers the version
  kept out of it: it joined the scope) is labelled just above it: ``lifted``. Where the
  region it names was not read (``--regions``), some shapes fit a delete as well as a
  stand-in (``unsure``): repair then decides only what both readings decide alike.

Why neither rule counts more than that: repair writes stand-ins too (its delete of the
winner outside the winner's scope), labelled as it labels the winner. Were a stand-in read
as a delete by ``own_seq``, or passed by ``lifted`` where no put goes (outside the scope),
every run of repair over such a delete that the region refuses would write its tombstone
one seq higher and label the winner above it the next time: after a few runs a copy
repair puts into a region of the scope would outrank the origin's next records of T, and
refuse its delete there (``tests/unit/test_repair_rising_tombstone.py``). Read as a lower
bound, and passed only where a put goes, a stand-in of repair's own label yields that same
label again: repeated runs write the same versions. And a stand-in is passed by a mark
after its seq (``_LIFT``), not by the next seq: a rule change can bring a region whose
stand-in carries a label lifted before into the scope, and marks never reach the next
record (``tests/unit/test_repair_repeated_runs.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from dynamodb_replicator.core.content import digest
from dynamodb_replicator.core.model import Item, SystemAttributes, Tombstone, Version, pad_sequence
from dynamodb_replicator.core.policy import LATEST, is_marked, stored_version

__all__ = ["held_versions", "lifted", "own_seq", "stand_in", "unsure"]

# The lowest real seq (``core.scoping``): never "" (an earlier-scheme label, which a
# tombstone would read back as a delete of every content of its timestamp and origin).
_LOWEST = pad_sequence("0")


# The mark of a label just above a stand-in's (``lifted``): that seq, then this mark. A
# label sorts above every label it extends and, whatever marks it carries, below the seq
# of every later record of the stream (the 40 digits decide first).
_LIFT = "+"


def _above(seq: str) -> str:
    """The seq of the next record after ``seq`` at the earliest (marks dropped): nothing
    that stream writes later is outranked by it."""
    return pad_sequence(str(int(seq.rstrip(_LIFT)) + 1))


def _real(seq: str) -> bool:
    return seq not in ("", LATEST)


def _same(a: Version, b: Version) -> bool:
    return a.timestamp == b.timestamp and a.origin == b.origin


def own_seq(
    region: str,
    item: Item,
    items: Mapping[str, Item | None],
    tombs: Mapping[str, Tombstone | None],
    fields: SystemAttributes,
    *,
    kept_out: Collection[str] = (),
) -> str:
    """The seq of ``region``'s own content ``item`` (see the module docstring); the
    tombstones remembered in ``kept_out`` are stand-ins (in every reading of them)."""
    mine = stored_version(item, region, fields)
    assert mine is not None
    wanted, seq = digest(item, fields), _LOWEST
    for other, copy in items.items():
        version = stored_version(copy, other, fields)
        if copy is None or version is None or not is_marked(copy, fields):
            continue
        if _same(version, mine) and _real(version.seq):
            seq = max(seq, version.seq if digest(copy, fields) == wanted else _above(version.seq))
    for holder, tomb in tombs.items():
        if tomb is not None and _same(tomb.version, mine) and _real(tomb.version.seq):
            # A delete came before the content; a put a stand-in kept out may be it.
            known = tomb.version.seq if holder in kept_out else _above(tomb.version.seq)
            seq = max(seq, known)
    return seq


def held_versions(items: Mapping[str, Item | None], fields: SystemAttributes) -> set[Version]:
    """The labels of the replica copies held (seq "" as its stand-ins carry it)."""
    held = set()
    for region, item in items.items():
        version = stored_version(item, region, fields)
        if item is not None and version is not None and is_marked(item, fields):
            seq = version.seq or _LOWEST
            held.add(Version.of(version.raw_timestamp, version.origin, seq))
    return held


def stand_in(
    tomb: Tombstone,
    holder: str,
    held: set[Version],
    tombs: Mapping[str, Tombstone | None],
    *,
    scoped: bool,
) -> bool:
    """May ``tomb``, remembered in ``holder``, be the projection's stand-in for a put
    rather than a delete? A real delete is remembered by the region whose application
    made it under that region's own name (D1 runs there too; co-deleters all end naming
    the largest of them), and that tombstone is always ranked. Stand-ins never name the
    region they are applied in, and the region they name (the put's source, or the
    smallest of its scope) remembers no delete of its own of that version. So a tombstone
    naming another region that repair read counts only if that region's own tombstone
    confirms it (a real delete whose D1 has not run there yet is still in flight: its
    record reaches every region after repair). One naming a region repair did not read
    (``--regions``) is told by its shape alone, and only where a residency rule is
    configured (``scoped``): without one the projection writes no stand-ins, and a delete
    made in an unread region has the shape of one (``_shaped``)."""
    named = tomb.deleted_in
    if named == holder:
        return False
    if named in tombs:
        own = tombs[named]
        # D1 writes the very version of the delete in every region, the deleting one too.
        return own is None or own.deleted_in != named or own.version != tomb.version
    return scoped and _shaped(tomb, holder, held)


def unsure(
    tomb: Tombstone,
    holder: str,
    held: set[Version],
    tombs: Mapping[str, Tombstone | None],
    *,
    scoped: bool,
) -> bool:
    """Is ``tomb``, remembered in ``holder`` and naming a region not read, of a shape a
    delete and a stand-in share? (T, O, ``LATEST``) in O is the stand-in that removed O's
    write outside its scope, and also any other region's delete of (T, O) as O remembers
    it; (T, O, s) of a copy no region read holds is a stand-in for a put still in flight
    (or lost), and also O's own delete of (T, O) (its REMOVE record's seq). ``stand_in``
    guesses the first a stand-in and the second a delete; a wrong guess loses the delete,
    or deletes the version the put in flight brings (it refuses that put). Certain: a
    delete of (T, O, ``LATEST``) anywhere but O, of an earlier-scheme seq "" (stand-ins
    never carry it), and a stand-in of a copy held (``_shaped``)."""
    named = tomb.deleted_in
    if not scoped or named == holder or named in tombs:
        return False
    seq = tomb.version.seq
    if seq == LATEST:
        return holder == tomb.version.origin
    return _real(seq) and tomb.version not in held


def _shaped(tomb: Tombstone, holder: str, held: set[Version]) -> bool:
    """The stand-ins' shapes: (T, O, seq) of a copy that is held (``_kept_out``; a delete
    an application made carries ``LATEST``, or in the origin its REMOVE record's seq,
    which labels no content unless a label of repair's met it), or (T, O, ``LATEST``) in
    O itself (``_own``, ``evicted``: the removal of O's write outside its scope)."""
    if tomb.version.seq == LATEST:
        return holder == tomb.version.origin
    return tomb.version in held


def lifted(version: Version, stand_ins: Iterable[Tombstone]) -> Version:
    """``version`` labelled above every stand-in of its timestamp and origin (with a real
    seq), so the put lands where one is remembered (P0 refuses a version not above it).
    ``stand_ins``: those of the regions the put goes to (the winner's scope) only. Just
    above, by a mark (``_LIFT``), not the next seq: a stand-in may carry a label lifted
    before (a delete of repair's outside a scope a rule change then widened), and a label
    one seq above it could reach the origin's next record and refuse its delete of T."""
    seq = version.seq
    for tomb in stand_ins:
        if _same(tomb.version, version) and _real(tomb.version.seq) and tomb.version.seq >= seq:
            seq = tomb.version.seq + _LIFT
    return Version.of(version.raw_timestamp, version.origin, seq)
