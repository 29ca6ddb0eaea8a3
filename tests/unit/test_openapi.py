"""The OpenAPI documents are a checked artifact (`docs/openapi/*.json`, written by `make openapi`)
and complete: every operation says what it answers, errors included, and the event stream
names its events and their models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from easel_shared import schemas
from scripts.openapi import OUT, ROOT, documents, render

DOCUMENTS = documents()
ERROR_REF = "#/components/schemas/ErrorEnvelope"


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_committed_documents_are_current(name: str) -> None:
    path = OUT / f"{name}.json"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run `make openapi`"
    assert path.read_text(encoding="utf-8") == render(DOCUMENTS[name]), (
        f"{path.relative_to(ROOT)} differs from the code's document: run `make openapi` and commit it")


def _has_schema(schema: dict[str, Any]) -> bool:
    """A model (or a union of models), not a free-form body."""
    return bool(schema.get("$ref") or schema.get("oneOf") or schema.get("properties"))


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_operation_documents_its_success(name: str) -> None:
    missing = []
    for method, path, op in operations(DOCUMENTS[name]):
        success = {code: r for code, r in op["responses"].items() if code[0] in "23"}
        if not success:
            missing.append(f"{method} {path}: no success response")
        for code, response in success.items():
            if code == "204":
                assert "content" not in response, (method, path)
            elif code.startswith("3"):
                if "Location" not in response.get("headers", {}):
                    missing.append(f"{method} {path} {code}: no Location header")
            else:
                contents = response.get("content", {})
                if not contents or not all(_has_schema(c.get("schema", {})) for c in contents.values()):
                    missing.append(f"{method} {path} {code}: no response schema")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_errors_are_the_envelope(name: str) -> None:
    document = DOCUMENTS[name]
    wrong = []
    for method, path, op in operations(document):
        codes = {code for code in op["responses"] if code[0] in "45"}
        if "422" not in codes:
            wrong.append(f"{method} {path}: 422 validation_error not documented")
        if path.startswith("/v1/") and "401" not in codes:
            wrong.append(f"{method} {path}: 401 unauthenticated not documented")
        for code in codes:
            schema = op["responses"][code].get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") != ERROR_REF:
                wrong.append(f"{method} {path} {code}: not the error envelope")
    assert not wrong, "\n".join(wrong)
    # FastAPI's own validation error shape is never what the services answer.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_event_stream_names_every_event_and_its_model() -> None:
    document = DOCUMENTS["api"]
    response = document["paths"]["/v1/boards/{board_id}/events"]["get"]["responses"]["200"]
    assert set(response["content"]) == {"text/event-stream"}
    schema = response["content"]["text/event-stream"]["schema"]
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == {
        "board.snapshot", "node.created", "node.updated", "node.deleted", "edge.created", "edge.deleted",
        "generation.queued", "generation.started", "generation.progress", "generation.succeeded",
        "generation.failed", "generation.canceled",
    }
    components = document["components"]["schemas"]
    for ref in mapping.values():
        assert ref.rsplit("/", 1)[-1] in components, ref
    # Each event's data model is the public one.
    event = TypeAdapter(schemas.BoardStreamEvent)
    assert event.validate_python({"id": "5-0", "event": "node.deleted",
                                  "data": {"id": "nod_1", "board_id": "brd_1", "asset_id": None}})
    assert "description" in response and "board.snapshot" in response["description"]


def test_statuses_are_enums() -> None:
    components = DOCUMENTS["api"]["components"]["schemas"]
    assert components["Generation"]["properties"]["status"]["enum"] == [
        "queued", "running", "succeeded", "failed", "canceled"]
    assert components["ImageNode"]["properties"]["status"]["enum"] == ["empty", "generating", "ready", "failed"]
    assert "enum" in DOCUMENTS["assets"]["components"]["schemas"]["AssetOrigin"]["properties"]["reason"]
