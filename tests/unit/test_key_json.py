"""One JSON encoding of keys (diff rows, repair input, copy resume points, the text and
JSON reports), and the copy's segment progress."""

from __future__ import annotations

import base64
import io
import json

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from dynamodb_replicator.cli.diff import print_report, report_json
from dynamodb_replicator.core.codec import key_from_json, key_to_json
from dynamodb_replicator.core.model import AttributeValue
from dynamodb_replicator.core.progress import SegmentProgress
from dynamodb_replicator.ops.diff import DiffReport, RegionDiff

scalars = st.one_of(
    st.text().map(lambda s: {"S": s}),
    st.integers().map(lambda n: {"N": str(n)}),
    st.binary().map(lambda b: {"B": b}),
)
keys = st.dictionaries(st.sampled_from(["pk", "sk", "id"]), scalars, min_size=1)


@given(keys)
def test_a_key_survives_the_round_trip(key: dict[str, AttributeValue]) -> None:
    assert key_from_json(key_to_json(key)) == key


@given(keys)
def test_one_key_has_one_text_whatever_the_attribute_order(key: dict[str, AttributeValue]) -> None:
    reordered = dict(reversed(list(key.items())))
    assert key_to_json(reordered) == key_to_json(key)


def test_a_key_is_picked_out_of_an_item_by_name() -> None:
    item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "not key"}}
    assert key_from_json(key_to_json(item, ["sk", "pk"])) == {"pk": {"S": "a"}, "sk": {"N": "1"}}


def test_binary_is_base64_like_lambda_events_and_older_resume_points() -> None:
    text = key_to_json({"pk": {"B": b"\x00\xff"}})
    assert json.loads(text) == {"pk": {"B": base64.b64encode(b"\x00\xff").decode()}}
    older = json.dumps({"pk": {"B": base64.b64encode(b"\x01").decode()}})  # pre-merge backfill
    assert key_from_json(older) == {"pk": {"B": b"\x01"}}


def test_segment_progress_after_a_page() -> None:
    assert not SegmentProgress().started
    middle = SegmentProgress.after_page({"pk": {"S": "k"}})
    assert middle.started and not middle.done and middle.last_key == {"pk": {"S": "k"}}
    last = SegmentProgress.after_page(None)
    assert last.started and last.done and last.last_key is None


def test_repair_text_prints_the_json_key_after_its_json_report_was_built() -> None:
    # repair builds its JSON document first and prints the text report after it.
    report = DiffReport("Orders", "us-east-1", {"us-east-1": 1, "eu-west-1": 1})
    key = key_to_json({"id": {"S": "o1"}}, ["id"])
    report.regions["eu-west-1"] = RegionDiff()
    report.regions["eu-west-1"].note("different", key)
    document = report_json(report)
    assert document["regions"]["eu-west-1"]["samples"]["different"] == [{"id": {"S": "o1"}}]
    text = io.StringIO()
    print_report(Console(file=text, width=200), report)
    assert 'different: {"id": {"S": "o1"}}' in text.getvalue(), text.getvalue()
