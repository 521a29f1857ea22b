"""The runner's TOML configuration: the contract form and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.runner.config import load_config, parse_config

CONTRACT = """
tables = ["Orders"]
[[regions]]
name = "eu-west-1"
endpoint_url = "http://127.0.0.1:8000"   # optional: absent means real AWS
[[regions]]
name = "ap-southeast-1"
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "replicator.toml"
    path.write_text(CONTRACT)
    config = load_config(path)
    assert config.tables == ("Orders",)
    assert [(r.name, r.endpoint_url) for r in config.regions] == [
        ("eu-west-1", "http://127.0.0.1:8000"),
        ("ap-southeast-1", None),
    ]
    assert config.lease_timeout_seconds == 30.0
    assert config.state_table == "dynamodb-replicator-state"


def regions(*names: str) -> list[dict[str, Any]]:
    return [{"name": n} for n in names]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tables": ["Orders"], "regions": regions("a1", "b1"), "tabels": []}, "unknown"),
        ({"tables": ["Orders"], "regions": regions("a1", "a1")}, "listed twice"),
        ({"tables": ["Orders"], "regions": regions("a1")}, "at least two"),
        ({"tables": [], "regions": regions("a1", "b1")}, "tables"),
        ({"tables": ["x"], "regions": regions("a1", "b1")}, "invalid table name"),
        (
            {"tables": ["Orders"], "regions": [{"name": "a1", "endpoint": "x"}, {"name": "b"}]},
            "unknown key endpoint",
        ),
        (
            {
                "tables": ["Orders"],
                "regions": [{"name": "a1", "endpoint_url": "nope"}, {"name": "b"}],
            },
            "URL",
        ),
        (
            {"tables": ["Orders"], "regions": regions("a1", "b1"), "lease_timeout_seconds": "30"},
            "float",
        ),
        ({"tables": ["Orders"], "regions": regions("a1", "b1"), "page_limit": 5000}, "1000"),
        (
            {"tables": ["Orders"], "regions": regions("a1", "b1"), "missing_timestamp": "drop"},
            "fail or skip",
        ),
    ],
)
def test_bad_configs_say_what_is_wrong(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_every_unknown_key_is_named_at_once_with_a_close_match() -> None:
    data = {
        "tables": ["Orders"],
        "regions": [{"name": "a1", "endpoint": "http://x"}, {"name": "b1", "rolearn": "r"}],
        "lease_timout_seconds": 5,
        "zzz": 1,
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value).splitlines() == [
        "unknown key lease_timout_seconds (did you mean lease_timeout_seconds?)",
        "unknown key zzz",
        "regions[0] (a1): unknown key endpoint (did you mean endpoint_url?)",
        "regions[1] (b1): unknown key rolearn (did you mean role_arn?)",
    ]


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("tables = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
