"""The HTTP API, one ``APIRouter`` per resource; ``create_app`` includes them all.

Bodies the routes read themselves (multipart photos through the streaming parser, small JSON
objects) are documented here from the same request models that check them.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

_BINARY = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}


def multipart_body(model: type[BaseModel], files: dict[str, bool], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``openapi_extra`` of a multipart route: its file fields (``name: many``) as binary parts,
    then the text fields of ``model``; JSON-valued fields (metadata) say so in ``encoding``."""
    schema = model.model_json_schema()
    props: dict[str, Any] = {name: ({"type": "array", "items": _BINARY} if many else _BINARY)
                             for name, many in files.items()}
    encoding: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        props[name] = prop
        kinds = [p.get("type") for p in prop.get("anyOf", [prop])]
        if "object" in kinds:
            encoding[name] = {"contentType": "application/json"}
    content: dict[str, Any] = {"schema": {"type": "object", "title": f"{model.__name__}Form", "properties": props,
                                          "required": [*files, *schema.get("required", []), *required]}}
    if encoding:
        content["encoding"] = encoding
    return {"requestBody": {"required": True, "content": {"multipart/form-data": content}}}


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a small JSON object (checked by ``model``)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def routers() -> tuple[list[APIRouter], list[APIRouter]]:
    """(the server-wide routers, with their whole paths; the routers of one collection, with paths
    below ``/v1`` that ``create_app`` mounts twice: under ``/v1`` for ``default`` and under
    ``/v1/collections/{collection}``), each in the order its paths must be matched."""
    from . import (
        audit,
        backup,
        collections,
        discover,
        faces,
        jobs,
        keys,
        maintenance,
        review,
        search,
        service,
        subjects,
    )

    server = [service.server_router, keys.server_router, audit.server_router, maintenance.server_router,
              collections.server_router, backup.server_router]
    per_collection = [service.router, search.router, subjects.router, faces.router, maintenance.router,
                      review.router, jobs.router, discover.router]
    return server, per_collection
