"""A copy's progress and a command's notes in the state table (aws/state.py): the items
``cp|backfill:TABLE|SOURCE|SEGMENT-of-SEGMENTS`` and ``cp|note:NAME``."""

from __future__ import annotations

from collections.abc import Mapping

from dynamodb_replicator.aws.state_table import StateTable
from dynamodb_replicator.core.codec import key_from_json, key_to_json
from dynamodb_replicator.core.progress import ScanSegment, SegmentProgress

__all__ = ["ProgressItems"]

_SCAN_DONE = "DONE"  # stored for a finished segment (never a key_to_json text)
_SCAN_NONE = "NONE"  # stored for a segment to start again from the beginning


class ProgressItems(StateTable):
    """The scan progress and notes part of the state store."""

    @staticmethod
    def _progress_id(scan: ScanSegment) -> str:
        return f"backfill:{scan.table}|{scan.source}|{scan.segment}-of-{scan.segments}"

    def load_progress(self, scan: ScanSegment) -> SegmentProgress:
        """How far the segment's copy into ``scan.target`` came (not started: none saved)."""
        saved = self._load_positions(self._progress_id(scan)).get(scan.target)
        if saved == _SCAN_NONE:
            return SegmentProgress()
        if saved == _SCAN_DONE:
            return SegmentProgress(done=True)
        return SegmentProgress(key_from_json(saved) if saved else None)

    def save_progress(self, scan: ScanSegment, progress: SegmentProgress) -> None:
        if progress.done:
            saved = _SCAN_DONE
        elif progress.last_key is not None:
            saved = key_to_json(progress.last_key)
        else:
            return  # not started: nothing to remember
        self._save_positions(self._progress_id(scan), {scan.target: saved})

    def clear_progress(self, scan: ScanSegment) -> None:
        """Forget the segment's progress: a new copy starts from the beginning."""
        self._save_positions(self._progress_id(scan), {scan.target: _SCAN_NONE})

    def load_note(self, name: str) -> str | None:
        """A short text a command keeps between its runs (``note:NAME``), None if absent."""
        return self._load_positions(f"note:{name}").get("note")

    def save_note(self, name: str, text: str) -> None:
        """Keep ``text`` under ``name`` (see ``load_note``)."""
        self._save_positions(f"note:{name}", {"note": text})

    def _save_positions(self, name: str, positions: Mapping[str, str]) -> None:
        if not positions:
            return
        names = {f"#p{i}": f"pos#{target}" for i, target in enumerate(positions)}
        values = {f":p{i}": {"S": seq} for i, seq in enumerate(positions.values())}
        assignments = ", ".join(f"#p{i} = :p{i}" for i in range(len(positions)))
        key = {"pk": {"S": f"cp|{name}"}}
        self._call(
            "UpdateItem",
            lambda: self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=f"SET {assignments}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ),
        )
