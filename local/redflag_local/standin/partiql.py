"""PartiQL ``UPDATE`` statements of a ``BatchExecuteStatement``, answered as DynamoDB does.

moto 5.2.5 hands PartiQL to py-partiql-parser, which for an ``UPDATE`` knows no comparison but ``=``,
no ``SET x = x + ?``, no ``SET`` followed by ``REMOVE``, gives no ``ConditionalCheckFailed`` when the
``WHERE`` matches nothing (it updates nothing, silently), and copies every item of every table for
each statement. The sweeper's flag is such a statement, so the stand-in answers it itself: each
``UPDATE`` becomes the ``UpdateItem`` it means (the ``WHERE``'s equalities on the table's key are the
key, the rest of the ``WHERE`` the condition, with ``attribute_exists`` of the key, since an ``UPDATE``
never creates an item), moto applies that (its condition evaluation, its stream record), and moto's
answer becomes the statement's response. Injected faults on ``UpdateItem`` apply to each statement.
A batch with any other statement goes to moto unchanged.

Grammar understood (DynamoDB's, for these statements): ``UPDATE "table" (SET path = value | REMOVE
path)... WHERE path op ? [AND path op ?]...`` with ``value`` a ``?`` or ``path + ?`` / ``path - ?``, and
``op`` one of ``= <> < <= > >=``; a path is a name or a double-quoted name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from moto.core.botocore_stubber import MockRawResponse

_TOKEN = re.compile(r'\s*(?:("(?:[^"]|"")*")|(<=|>=|<>|[=<>+\-,?])|([A-Za-z_][A-Za-z0-9_]*))')
_COMPARISONS = {"=", "<>", "<", "<=", ">", ">="}
# UpdateItem's error (moto's __type) -> a batch statement's error code (BatchStatementErrorCodeEnum)
_CODES = {
    "ConditionalCheckFailedException": "ConditionalCheckFailed",
    "ProvisionedThroughputExceededException": "ProvisionedThroughputExceeded",
    "ThrottlingException": "ThrottlingError",
    "RequestLimitExceeded": "RequestLimitExceeded",
    "TransactionConflictException": "TransactionConflict",
    "InternalServerError": "InternalServerError",
    "ResourceNotFoundException": "ResourceNotFound",
    "ValidationException": "ValidationError",
    "AccessDeniedException": "AccessDenied",
}


class Unsupported(ValueError):
    """Not an UPDATE this module understands: moto gets the batch as it is."""


@dataclass
class Update:
    table: str
    sets: list[tuple[str, str]] = field(default_factory=list)  # (path, "?" | "path + ?" | "path - ?")
    removes: list[str] = field(default_factory=list)
    where: list[tuple[str, str]] = field(default_factory=list)  # (path, operator), each against a ?


def _tokens(statement: str) -> list[str]:
    out, pos = [], 0
    statement = statement.rstrip()
    while pos < len(statement):
        m = _TOKEN.match(statement, pos)
        if not m or m.end() == pos:
            raise Unsupported(statement[pos : pos + 20])
        out.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return out


def _name(token: str) -> str:
    if token.startswith('"'):
        return token[1:-1].replace('""', '"')
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token) or token.upper() in {"SET", "REMOVE", "WHERE", "AND"}:
        raise Unsupported(token)
    return token


def parse(statement: str) -> Update:
    t = _tokens(statement)
    if len(t) < 2 or t[0].upper() != "UPDATE":
        raise Unsupported(t[0] if t else "")
    update, i = Update(_name(t[1])), 2

    def at(k: int) -> str:
        return t[k] if k < len(t) else ""

    while at(i).upper() in ("SET", "REMOVE"):
        action, i = at(i).upper(), i + 1
        while True:
            path = _name(at(i))
            if action == "REMOVE":
                update.removes.append(path)
                i += 1
            elif at(i + 1) != "=":
                raise Unsupported(at(i + 1))
            elif at(i + 2) == "?":
                update.sets.append((path, "?"))
                i += 3
            elif at(i + 3) in ("+", "-") and at(i + 4) == "?":
                update.sets.append((path, f"{_name(at(i + 2))} {at(i + 3)} ?"))
                i += 5
            else:
                raise Unsupported(at(i + 2))
            if at(i) != ",":
                break
            i += 1
    if at(i).upper() != "WHERE" or not (update.sets or update.removes):
        raise Unsupported(at(i))
    i += 1
    while True:
        path, op = _name(at(i)), at(i + 1)
        if op not in _COMPARISONS or at(i + 2) != "?":
            raise Unsupported(op)
        update.where.append((path, op))
        i += 3
        if at(i) == "":
            return update
        if at(i).upper() != "AND":
            raise Unsupported(at(i))
        i += 1


def update_item(update: Update, parameters: list[dict[str, Any]], key_names: list[str]) -> dict[str, Any]:
    """The UpdateItem request an UPDATE statement means (parameters bound in statement order)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    params = iter(parameters)

    def name(path: str) -> str:
        for alias, known in names.items():
            if known == path:
                return alias
        alias = f"#n{len(names)}"
        names[alias] = path
        return alias

    def value() -> str:
        alias = f":v{len(values)}"
        try:
            values[alias] = next(params)
        except StopIteration:
            raise Unsupported("fewer parameters than ?") from None
        return alias

    sets = []
    for path, expr in update.sets:
        if expr == "?":
            sets.append(f"{name(path)} = {value()}")
        else:
            source, op, _ = expr.split(" ")
            sets.append(f"{name(path)} = {name(source)} {op} {value()}")
    key: dict[str, Any] = {}
    conditions = [f"attribute_exists({name(key_names[0])})"]
    for path, op in update.where:
        alias = value()
        if op == "=" and path in key_names and path not in key:
            key[path] = values.pop(alias)
        else:
            conditions.append(f"{name(path)} {op} {alias}")
    if sorted(key) != sorted(key_names):
        raise Unsupported("the WHERE must name the whole key")
    expression = " ".join(
        part
        for part in (
            "SET " + ", ".join(sets) if sets else "",
            "REMOVE " + ", ".join(name(p) for p in update.removes) if update.removes else "",
        )
        if part
    )
    request = {
        "TableName": update.table,
        "Key": key,
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
    }
    if values:
        request["ExpressionAttributeValues"] = values
    return request


Send = Callable[[str, AWSPreparedRequest], AWSResponse | None]  # (event name, request) -> moto's answer


def batch_execute(request: AWSPreparedRequest, key_names: Callable[[str], list[str]], send: Send) -> AWSResponse | None:
    """The answer to a BatchExecuteStatement of UPDATEs, each sent as an UpdateItem; None: not ours."""
    body = request.body or b"{}"
    payload = json.loads(body.decode() if isinstance(body, bytes | bytearray) else body)
    try:
        parsed = [(parse(s["Statement"]), s.get("Parameters", [])) for s in payload.get("Statements", [])]
        calls = [(u.table, update_item(u, params, key_names(u.table))) for u, params in parsed]
    except (Unsupported, KeyError):
        return None
    responses: list[dict[str, Any]] = []
    for table, call in calls:
        headers = HTTPHeaders()
        for k, v in request.headers.items():
            if k.lower() not in ("x-amz-target", "content-length"):
                headers[k] = v
        headers["X-Amz-Target"] = "DynamoDB_20120810.UpdateItem"
        sub = AWSPreparedRequest("POST", request.url, headers, json.dumps(call).encode(), False)
        answer = send("before-send.dynamodb.UpdateItem", sub)
        status = answer.status_code if answer is not None else 500
        if status == 200:
            responses.append({"TableName": table})
            continue
        error = json.loads(answer.content or b"{}") if answer is not None else {}
        code = str(error.get("__type", "InternalServerError")).rsplit("#", 1)[-1]
        message = "The conditional request failed" if code == "ConditionalCheckFailedException" else code
        statement_error = {"Code": _CODES.get(code, "InternalServerError"), "Message": message}
        responses.append({"TableName": table, "Error": statement_error})
    content = json.dumps({"Responses": responses}).encode()
    return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, MockRawResponse(content))  # type: ignore[arg-type]
