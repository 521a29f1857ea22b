"""Second adversarial review of pages in flight and of the update's present-only put (P1u),
after the fixes of 2bb9dea and 8891d12. An xfail test shows a defect still open."""

from __future__ import annotations

import threading

from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS
from .test_writes import HERE, TABLE, THERE, writer

WAIT = 10.0  # seconds: only a hang reaches it


def _insert(name: str, seq: str) -> PutVersion:
    key = ItemKey.from_attributes({"pk": {"S": name}})
    image: Item = {"pk": {"S": name}, FIELDS.timestamp: {"N": "5"}}
    return PutVersion(key, Version.of("5", THERE), image, seq)


def test_adv_apply_does_not_end_while_a_chain_of_it_still_writes() -> None:
    """The first chain that raised an unexpected error (not a ReplicatorError) made apply
    raise while other keys' chains still wrote, unsettled: the page's 'written' gate
    opened, the shard thread (and flush) could end, and _reap + balance re-acquire the
    lease at once while an orphan put retried until the old lease's deadline."""
    store = MemoryStore(HERE)
    lock = threading.Lock()
    puts: list[int] = []
    second = threading.Event()
    release = threading.Event()
    still_writing = threading.Event()

    def before(_s: MemoryStore, call: str) -> None:
        if call != f"put {TABLE}":
            return
        with lock:
            puts.append(1)
            mine = len(puts)
        if mine == 1:
            assert second.wait(WAIT)
            raise RuntimeError("a bug in one key's chain")
        second.set()
        still_writing.set()
        assert release.wait(WAIT)  # a slow put (or one waiting for its retry)
        still_writing.clear()

    store.before_call = before
    w = writer(store)
    ended = threading.Event()

    def run() -> None:
        try:
            w.apply(TABLE, [_insert("a", "1"), _insert("b", "2")])
        except RuntimeError:
            pass
        finally:
            ended.set()

    threading.Thread(target=run, daemon=True).start()
    assert second.wait(WAIT)
    overlapped = ended.wait(1.0) and still_writing.is_set()
    release.set()
    assert ended.wait(WAIT)
    w.close()
    assert not overlapped, "apply ended while another key's put was still being written"
