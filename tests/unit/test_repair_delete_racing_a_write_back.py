"""Repair's delete over a copy its region's application updated keeping the marker
supersedes that copy's nonce. Between repair's read and its write, that application may
write the replica's content back (the same nonce and marker): the item is then genuine
replica content again. A first delete that removed such an item as it was (found by
review, withdrawn) wrote a REMOVE record that, read by the seal as the replica
(T, O, o), went out as that region's delete of (T, O, ``LATEST``) and removed O's own
write, which no one deleted, from every region. The delete now relabels the item as the
region's own content first (a replica write: its record an echo, or where it replaced the
genuine write-back, a restore of (T, O, o) everywhere) and removes that, whose REMOVE is
the replicator's own (``core.writes``, D2s; every call interleaved with the application:
``test_repair_delete_over_a_disguised_copy.py``)."""

from __future__ import annotations

from dynamodb_replicator.core.plan import DeleteVersion

from .strategies import FIELDS
from .stream_regions import (
    AP,
    EU,
    TABLE,
    US,
    StreamRegions,
    T,
    apply_ops,
    decide,
    missed_by_all,
    n,
    s,
)


def test_a_repair_delete_racing_a_write_back_of_the_replica_keeps_the_origins_write() -> None:
    """us-east-1 writes k at T (content 1), replicated. ap-southeast-1's application updates
    its copy to content 2 keeping the marker, eu-west-1's puts content 3 at T; both records
    are lost; eu-west-1 then deletes k (T, eu-west-1, s): ap-southeast-1 refuses it (the kept
    labels (T, us-east-1) outrank it), us-east-1 keeps its write. ``repair --regions
    ap-southeast-1,eu-west-1`` decides the delete in ap-southeast-1, superseding the copy's
    nonce. Before it writes, ap-southeast-1's application writes content 1 back (nonce and
    marker kept). After the repair and replication, us-east-1 must still hold its own write:
    nobody deleted (T, us-east-1), which outranks every other version of k."""
    world = StreamRegions([AP, EU, US])
    try:
        k = world.key("k")
        world.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
        world.quiesce()
        world.update(AP, k, content=n(2))
        missed_by_all(world, AP)
        world.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(3)})
        missed_by_all(world, EU)
        world.delete(EU, k)
        world.quiesce()
        assert world.contents(k)[EU] is None and world.contents(k)[US] is not None
        ops = decide(world, k, [AP, EU])
        delete = ops[AP]
        assert set(ops) == {AP} and isinstance(delete, DeleteVersion)
        world.update(AP, k, content=n(1))  # the write-back: the genuine replica again
        held = world.stores[AP].item(TABLE, k)
        assert held is not None and held["content"] == n(1)  # the state this test is about
        apply_ops(world, ops)
        world.quiesce()
        assert world.contents(k)[US] == {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(1)}
    finally:
        world.close()
