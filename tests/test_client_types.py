"""`baton_client`'s reply types against the server's own OpenAPI document.

Every field a TypedDict in ``baton_client.types`` declares must exist in the schema of the
reply the client reads it from (FastAPI sends every field of a response model, defaults too,
while no route excludes any: checked below), and have a JSON type the client's
annotation accepts (a server that may send ``null`` where the client expects an ``int`` fails
here, not in a user's terminal).
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

import baton_client.types as client_types
from orchestrator.app import create_app
from tests.support.api import make_settings

# (client type, method, path, status): where the client reads each type from (client.py).
READS: list[tuple[Any, str, str, str]] = [
    (client_types.Tokens, "post", "/auth/login", "200"),
    (client_types.Tokens, "post", "/auth/refresh", "200"),
    (client_types.User, "get", "/auth/me", "200"),
    (client_types.ExperimentDetail, "post", "/api/v1/experiments", "201"),
    (client_types.ExperimentPage, "get", "/api/v1/experiments", "200"),
    (client_types.ExperimentDetail, "get", "/api/v1/experiments/{experiment_id}", "200"),
    (client_types.ExperimentDetail, "post", "/api/v1/experiments/{experiment_id}/cancel", "200"),
    (client_types.ExperimentDetail, "post", "/api/v1/experiments/{experiment_id}/retry", "200"),
    (client_types.LogChunk, "get", "/api/v1/experiments/{experiment_id}/logs", "200"),
    (list[client_types.Worker], "get", "/api/v1/workers", "200"),
    (client_types.UsageReport, "get", "/api/v1/platforms/usage", "200"),
    (client_types.Bootstrap, "get", "/api/v1/bootstrap/{platform}", "200"),
    (client_types.Bundle, "post", "/api/v1/bundles", "201"),
    (client_types.WorkerTokenCreated, "post", "/api/v1/worker-tokens", "201"),
    (list[client_types.WorkerToken], "get", "/api/v1/worker-tokens", "200"),
    (client_types.WorkerToken, "delete", "/api/v1/worker-tokens/{token_id}", "200"),
    (client_types.Secret, "put", "/api/v1/secrets/{name}", "200"),
    (list[client_types.Secret], "get", "/api/v1/secrets", "200"),
]
ANY = frozenset({"string", "integer", "number", "boolean", "null", "object", "array"})


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data = tmp_path_factory.mktemp("openapi")
    settings = make_settings(database_url=f"sqlite:///{data / 'x.db'}", redis_url="", data_dir=data)
    return create_app(settings)


@pytest.fixture(scope="module")
def openapi(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = app.openapi()
    return document


def test_replies_carry_every_field_of_their_model(app: FastAPI) -> None:
    """What makes a field in the schema a field in every reply (fields the schema does not list
    as required included): no route leaves unset, default or None fields out."""
    leaving_out = [
        route.path
        for route in app.routes
        if isinstance(route, APIRoute)
        and (
            route.response_model_exclude_unset
            or route.response_model_exclude_defaults
            or route.response_model_exclude_none
        )
    ]
    assert leaving_out == []


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def _branches(schema: dict[str, Any], document: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a value may take (anyOf / oneOf flattened), each resolved."""
    schema = _resolve(schema, document)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [b for s in schema[key] for b in _branches(s, document)]
    return [schema]


def _kinds(schema: dict[str, Any]) -> frozenset[str]:
    """JSON types a (resolved, single-branch) schema admits."""
    if "type" in schema:
        declared = schema["type"]
        return frozenset(declared if isinstance(declared, list) else [declared])
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if values is not None:
        names = {str: "string", bool: "boolean", int: "integer", float: "number"}
        return frozenset("null" if v is None else names[type(v)] for v in values)
    return ANY  # no constraint: anything may come


def _accepts(annotation: Any) -> frozenset[str]:
    """JSON types a client annotation accepts."""
    if annotation is Any:
        return ANY
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return frozenset().union(*(_accepts(a) for a in get_args(annotation)))
    if annotation is type(None):
        return frozenset({"null"})
    if is_typeddict(annotation) or origin is dict or annotation is dict:
        return frozenset({"object"})
    if origin is list or annotation is list:
        return frozenset({"array"})
    simple = {str: {"string"}, bool: {"boolean"}, int: {"integer"}, float: {"integer", "number"}}
    return frozenset(simple[annotation])


def _member(annotation: Any, kind: str) -> Any:
    """The part of ``annotation`` (itself, or a member of its union) that reads JSON ``kind``."""
    union = get_origin(annotation) in (typing.Union, types.UnionType)
    return next(
        m for m in (get_args(annotation) if union else (annotation,)) if kind in _accepts(m)
    )


def _check(
    annotation: Any, schema: dict[str, Any], document: dict[str, Any], where: str
) -> list[str]:
    problems: list[str] = []
    accepted = _accepts(annotation)
    for branch in _branches(schema, document):
        sent = _kinds(branch)
        if not sent <= accepted:
            problems.append(
                f"{where}: the server may send {sorted(sent - accepted)}, the client "
                f"reads {annotation!r}"
            )
            continue
        if "array" in sent and "items" in branch:
            inner = _member(annotation, "array")
            item = get_args(inner)[0] if get_args(inner) else Any
            problems += _check(item, branch["items"], document, f"{where}[]")
        if "object" in sent and is_typeddict(inner := _member(annotation, "object")):
            problems += _check_fields(inner, branch, document, where)
    return problems


def _check_fields(
    typed: Any, schema: dict[str, Any], document: dict[str, Any], where: str
) -> list[str]:
    problems: list[str] = []
    properties = schema.get("properties", {})
    for name, annotation in get_type_hints(typed).items():
        field = f"{where}.{name}"
        if name not in properties:
            problems.append(f"{field}: the client reads it, the server's schema has no such field")
            continue
        problems += _check(annotation, properties[name], document, field)
    return problems


def _reply_schema(document: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"][status]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


@pytest.mark.parametrize(("typed", "method", "path", "status"), READS, ids=lambda v: str(v))
def test_client_types_match_the_servers_schema(
    openapi: dict[str, Any], typed: Any, method: str, path: str, status: str
) -> None:
    schema = _reply_schema(openapi, method, path, status)
    problems = _check(typed, schema, openapi, f"{method.upper()} {path}")
    assert not problems, "\n".join(problems)


def test_every_client_type_is_checked() -> None:
    declared = {v for v in vars(client_types).values() if is_typeddict(v)}
    reached: set[Any] = set()

    def reach(annotation: Any) -> None:
        if is_typeddict(annotation):
            reached.add(annotation)
            for hint in get_type_hints(annotation).values():
                reach(hint)
        for arg in get_args(annotation):
            reach(arg)

    for typed, *_ in READS:
        reach(typed)
    # Experiment is ExperimentDetail's base: its fields are checked through it.
    assert declared - reached <= {client_types.Experiment}, declared - reached


def test_the_check_catches_a_mismatch(openapi: dict[str, Any]) -> None:
    """The comparison itself can fail: a client expecting a non-null int where the server may
    send null, and a field the server does not have."""

    class Wrong(typing.TypedDict):
        finished_at: int
        no_such_field: str

    schema = _reply_schema(openapi, "get", "/api/v1/experiments/{experiment_id}", "200")
    problems = _check(Wrong, schema, openapi, "GET")
    assert any("finished_at" in p and "null" in p for p in problems), problems
    assert any("no_such_field" in p for p in problems), problems
