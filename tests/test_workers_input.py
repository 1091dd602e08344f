"""Pure unit tests of what the workers accept: message bodies, log entries, ids, config documents,
worker arguments, the metrics exposition."""

from __future__ import annotations

import json

import pytest

from workers.config import ConfigError, parse_config
from workers.facade import as_text, wants_text
from workers.input import InputError, body_limit, check_id, parse_log_entry, parse_message
from workers.metrics import MetricsRegistry
from workers.runtime import parse_args

LIMIT = 16


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("content_type", "charset", "body", "status", "names"),
    [
        ("application/json", None, b"{not json", 400, "malformed JSON"),
        ("application/json", None, b"", 400, "malformed JSON"),
        ("application/json", None, b"\xff\xfe", 400, "UTF-8"),
        ("application/json", None, _json(["msg"]), 400, "JSON object"),
        ("application/json", None, _json({}), 400, "missing field 'msg'"),
        ("application/json", None, _json({"msg": ""}), 400, "is empty"),
        ("application/json", None, _json({"msg": "   "}), 400, "is empty"),
        ("application/json", None, _json({"msg": 5}), 400, "must be a string, got int"),
        ("application/json", None, _json({"msg": None}), 400, "missing field 'msg'"),
        ("application/json", None, _json({"text": "x"}), 400, "missing field 'msg' (got 'text')"),
        ("application/json", None, _json({"msg": "x", "extra": 1}), 400, "unknown field(s): 'extra'"),
        ("application/json", None, _json({"msg": "x" * (LIMIT + 1)}), 413, "limit is 16"),
        ("application/json", None, _json({"msg": "é" * 9}), 413, "18 bytes"),
        ("application/json", None, b" " * (body_limit(LIMIT) + 1), 413, "request body"),
        ("text/plain", None, b"", 400, "empty"),
        ("text/plain", None, b"\xff", 400, "not valid utf-8"),
        ("text/plain", "no-such-charset", b"x", 415, "unknown charset"),
        ("text/plain", None, b"y" * (LIMIT + 1), 413, "limit is 16"),
        ("application/x-www-form-urlencoded", None, b"msg=x", 415, "unsupported content type"),
        ("", None, b"x", 415, "'none'"),
    ],
)
def test_bad_message_is_rejected_naming_the_problem(content_type: str, charset: str | None, body: bytes,
                                                    status: int, names: str) -> None:
    with pytest.raises(InputError) as err:
        parse_message(content_type, charset, body, LIMIT)
    assert err.value.status == status
    assert names in err.value.message


@pytest.mark.parametrize(
    ("content_type", "charset", "body", "expected"),
    [
        ("application/json", None, _json({"msg": "msg1"}), "msg1"),
        ("application/vnd.api+json", None, _json({"msg": "ünï"}), "ünï"),
        ("application/json", None, _json({"msg": "x" * LIMIT}), "x" * LIMIT),
        ("text/plain", None, "hello wörld".encode(), "hello wörld"),
        ("text/plain", "latin-1", "café".encode("latin-1"), "café"),
    ],
)
def test_good_message_is_accepted(content_type: str, charset: str | None, body: bytes, expected: str) -> None:
    assert parse_message(content_type, charset, body, LIMIT) == expected


def test_log_entry_needs_a_string_id_and_msg() -> None:
    assert parse_log_entry(_json({"id": "a", "msg": "b"}), LIMIT).id == "a"
    for doc, names in [({"msg": "b"}, "missing field 'id'"), ({"id": 3, "msg": "b"}, "'id' must be a string"),
                       ({"id": "a"}, "missing field 'msg'"), ({"id": "", "msg": "b"}, "id is empty")]:
        with pytest.raises(InputError, match=names):
            parse_log_entry(_json(doc), LIMIT)


@pytest.mark.parametrize("bad", ["", "  ", "x" * 201, "a\nb"])
def test_bad_idempotency_key_is_400(bad: str) -> None:
    with pytest.raises(InputError) as err:
        check_id(bad)
    assert err.value.status == 400


def _config_doc() -> dict:
    return {"name": "logging-2", "service": "logging",
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "topic": "t", "consumer_group": "g"},
            "hazelcast": {"cluster_name": "c", "members": ["h:1", "h:2", "h:3"], "own_member": "h:2", "map": "m"},
            "limits": {"max_message_bytes": 100}, "settings": {"replay": True}}


def test_config_parses_and_puts_own_member_first() -> None:
    cfg = parse_config(_config_doc())
    assert cfg.hazelcast.members_own_first() == ["h:2", "h:1", "h:3"]
    assert cfg.setting("replay", False, bool) is True
    assert cfg.setting("op_timeout", 5.0, (int, float)) == 5.0


@pytest.mark.parametrize(
    ("path", "value", "names"),
    [
        (("kafka", "topic"), None, "kafka.topic has bad value None"),
        (("hazelcast", "members"), [], "hazelcast.members"),
        (("limits", "max_message_bytes"), True, "limits.max_message_bytes"),
        (("limits", "max_message_bytes"), 0, "limits.max_message_bytes"),
    ],
)
def test_bad_config_names_the_key(path: tuple[str, str], value: object, names: str) -> None:
    doc = _config_doc()
    doc[path[0]][path[1]] = value
    with pytest.raises(ConfigError, match=names):
        parse_config(doc)


def test_missing_config_key_is_named() -> None:
    doc = _config_doc()
    del doc["kafka"]
    with pytest.raises(ConfigError, match="missing key 'kafka.bootstrap_servers'"):
        parse_config(doc)


def test_bad_setting_type_is_named() -> None:
    doc = _config_doc()
    doc["settings"]["replay"] = "yes"
    with pytest.raises(ConfigError, match="settings.replay"):
        parse_config(doc).setting("replay", False, bool)


def test_worker_args_defaults_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args("logging", [], env={"PIPELINE_CONFIG_SERVER": "http://127.0.0.1:9/"})
    assert (args.name, args.port, args.host, args.config_server) == (None, 0, "127.0.0.1", "http://127.0.0.1:9")
    for argv, names in [(["--port", "70000"], "0..65535"), (["--port", "x"], "integer"),
                        (["--config-server", "localhost:8500"], "http(s) URL")]:
        with pytest.raises(SystemExit):
            parse_args("logging", argv, env={})
        assert names in capsys.readouterr().err


def test_metrics_exposition() -> None:
    reg = MetricsRegistry()
    hits = reg.counter("hits_total", "hits", ("route",))
    lat = reg.histogram("lat_seconds", "latency", buckets=(0.1, 1.0))
    hits.inc(route='/a"b')
    hits.inc(2, route='/a"b')
    lat.observe(0.05)
    lat.observe(5)
    text = reg.render()
    assert 'hits_total{route="/a\\"b"} 3' in text
    assert 'lat_seconds_bucket{le="0.1"} 1' in text
    assert 'lat_seconds_bucket{le="1"} 1' in text
    assert 'lat_seconds_bucket{le="+Inf"} 2' in text
    assert "lat_seconds_count 2" in text
    assert "# TYPE lat_seconds histogram" in text
    with pytest.raises(ValueError):
        hits.inc(other="x")


def test_text_negotiation() -> None:
    assert wants_text("text/plain")
    assert not wants_text("application/json, text/plain")
    assert not wants_text("*/*")
    assert as_text(["a", "b"], ["a"]) == "logging: a, b\nmessages: a\n"
