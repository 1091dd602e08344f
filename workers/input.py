"""Validation of what clients send: message bodies, log entries, idempotency keys. Pure functions.

Every rejection is an `InputError(status, message)` whose message names the problem; the handlers
turn it into a 4xx JSON error, so nothing is stored and the worker keeps serving.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_ID_LENGTH = 200
# A JSON string may spell each byte of the message as a 6-byte \\uXXXX escape; the body cap lets any
# message within the limit through and still refuses to buffer an unbounded body.
JSON_ESCAPE_FACTOR = 6
ENVELOPE_BYTES = 1024


class InputError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LogEntry:
    id: str
    msg: str


def body_limit(max_message_bytes: int) -> int:
    """The most body bytes a worker reads before answering 413."""
    return max_message_bytes * JSON_ESCAPE_FACTOR + ENVELOPE_BYTES


def _check_msg(msg: object, max_message_bytes: int, where: str) -> str:
    if msg is None:
        raise InputError(400, f"missing field {where!r}")
    if not isinstance(msg, str):
        raise InputError(400, f"field {where!r} must be a string, got {type(msg).__name__}")
    if not msg.strip():
        raise InputError(400, f"field {where!r} is empty")
    size = len(msg.encode("utf-8", errors="surrogatepass"))
    if size > max_message_bytes:
        raise InputError(413, f"message is {size} bytes; the limit is {max_message_bytes}")
    return msg


def _json_object(body: bytes) -> Mapping[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(400, "request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise InputError(400, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _reject_unknown(doc: Mapping[str, Any], allowed: set[str], where: str = "") -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InputError(400, f"{where + ': ' if where else ''}unknown field(s): {', '.join(map(repr, unknown))}")


def is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/")
                                                    and content_type.endswith("+json"))


def parse_message(content_type: str, charset: str | None, body: bytes, max_message_bytes: int) -> str:
    """The message text of POST /messages: JSON {"msg": "..."} or a text/plain body."""
    if len(body) > body_limit(max_message_bytes):
        raise InputError(413, f"request body is {len(body)} bytes; the limit is {body_limit(max_message_bytes)}")
    if is_json_type(content_type):
        doc = _json_object(body)
        if "msg" not in doc:
            got = f" (got {', '.join(map(repr, sorted(doc)))})" if doc else ""
            raise InputError(400, f"missing field 'msg'{got}")
        _reject_unknown(doc, {"msg"})
        return _check_msg(doc["msg"], max_message_bytes, "msg")
    if content_type == "text/plain":
        encoding = charset or "utf-8"
        try:
            text = body.decode(encoding)
        except LookupError:
            raise InputError(415, f"unknown charset {encoding!r}") from None
        except UnicodeDecodeError:
            raise InputError(400, f"request body is not valid {encoding}") from None
        if not text.strip():
            raise InputError(400, "message body is empty")
        return _check_msg(text, max_message_bytes, "body")
    shown = content_type or "none"
    raise InputError(415, f"unsupported content type {shown!r}: send application/json {{\"msg\": ...}} or text/plain")


def parse_log_entry(body: bytes, max_message_bytes: int) -> LogEntry:
    """The JSON {"id": ..., "msg": ...} of POST /log (sent by the facade)."""
    return _log_entry(_json_object(body), "", max_message_bytes)


def _log_entry(doc: object, where: str, max_message_bytes: int) -> LogEntry:
    prefix = f"{where}." if where else ""
    if not isinstance(doc, Mapping):
        raise InputError(400, f"{where} must be an object {{\"id\": ..., \"msg\": ...}}")
    _reject_unknown(doc, {"id", "msg"}, where)
    msg_id = doc.get("id")
    if not isinstance(msg_id, str):
        raise InputError(400, f"field '{prefix}id' must be a string" if "id" in doc else f"missing field '{prefix}id'")
    return LogEntry(check_id(msg_id), _check_msg(doc.get("msg"), max_message_bytes, f"{prefix}msg"))


def check_id(value: str) -> str:
    """A message id (also an Idempotency-Key): 1..200 printable characters."""
    if not value.strip():
        raise InputError(400, "message id is empty")
    if len(value) > MAX_ID_LENGTH:
        raise InputError(400, f"message id is {len(value)} characters; the limit is {MAX_ID_LENGTH}")
    if not value.isprintable():
        raise InputError(400, "message id contains non-printable characters")
    return value


MAX_BATCH = 1000


@dataclass(frozen=True)
class BatchItem:
    """One message of POST /messages/batch: its id (given, or None for a fresh one) and text, or why not."""

    id: str | None
    msg: str | None
    error: InputError | None = None


def batch_body_limit(max_message_bytes: int) -> int:
    """A batch may be as large as 16 full-size single bodies."""
    return 16 * body_limit(max_message_bytes)


def _batch_item(item: object, index: int, max_message_bytes: int) -> BatchItem:
    where = f"messages[{index}]"
    try:
        if not isinstance(item, dict):
            raise InputError(400, f"{where} must be an object {{\"msg\": ..., \"id\": optional}}")
        _reject_unknown(item, {"id", "msg"}, where)
        msg_id = item.get("id")
        if msg_id is not None and not isinstance(msg_id, str):
            raise InputError(400, f"{where}.id must be a string")
        return BatchItem(check_id(msg_id) if msg_id is not None else None,
                         _check_msg(item.get("msg"), max_message_bytes, f"{where}.msg"))
    except InputError as exc:
        given = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        return BatchItem(given, None, exc)


def parse_batch(body: bytes, max_message_bytes: int) -> list[BatchItem]:
    """POST /messages/batch: {"messages": [{"msg": ..., "id": optional}, ...]}.

    A bad envelope is an InputError for the whole request; a bad item is reported in its own
    BatchItem so the good ones still go through. Ids repeated within one batch are refused (the
    second one could never be told apart from the first).
    """
    doc = _json_object(body)
    _reject_unknown(doc, {"messages"})
    items = doc.get("messages")
    if not isinstance(items, list):
        raise InputError(400, "field 'messages' must be a list" if "messages" in doc else "missing field 'messages'")
    if not items:
        raise InputError(400, "field 'messages' is empty")
    if len(items) > MAX_BATCH:
        raise InputError(413, f"batch has {len(items)} messages; the limit is {MAX_BATCH}")
    parsed = [_batch_item(item, i, max_message_bytes) for i, item in enumerate(items)]
    seen: set[str] = set()
    for i, item in enumerate(parsed):
        if item.error is None and item.id is not None:
            if item.id in seen:
                parsed[i] = BatchItem(item.id, None, InputError(400, f"messages[{i}].id {item.id!r} repeats an "
                                                                     "earlier id of this batch"))
            seen.add(item.id)
    return parsed


def parse_log_batch(body: bytes, max_message_bytes: int) -> list[LogEntry]:
    """POST /log/batch (sent by the facade): {"entries": [{"id", "msg"}, ...]}; any bad entry refuses all."""
    doc = _json_object(body)
    _reject_unknown(doc, {"entries"})
    entries = doc.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InputError(400, "field 'entries' must be a non-empty list")
    if len(entries) > MAX_BATCH:
        raise InputError(413, f"batch has {len(entries)} entries; the limit is {MAX_BATCH}")
    return [_log_entry(e, f"entries[{i}]", max_message_bytes) for i, e in enumerate(entries)]
