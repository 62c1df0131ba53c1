"""``/openapi.json`` is a contract a client can be written from.

Every route documents its request body (the multipart ones too: files as binary parts and the
fields of their request models), a 2xx answer with a schema, its error answers as ErrorBody, and
the bearer scheme. Then, as a generated client would, real calls are checked against the document:
each live answer (successes and errors) validates against the schema of its route and status,
with every object closed (a key the document does not name fails).
"""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from facephotos import make_face_variants
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from facedb.api import FaceDB
from facedb.contract import requests as r
from facedb.server.app import create_app

#: The routes that read a body, and its media type.
BODIES = {
    ("post", "/v1/search"): "multipart/form-data",
    ("post", "/v1/verify"): "multipart/form-data",
    ("post", "/v1/subjects/{name}/images"): "multipart/form-data",
    ("patch", "/v1/subjects/{name}"): "application/json",
    ("post", "/v1/keys"): "application/json",
    ("post", "/v1/collections"): "application/json",
    ("post", "/v1/jobs"): "multipart/form-data",
    ("post", "/v1/discover"): "multipart/form-data",
    ("post", "/v1/discover/runs"): "multipart/form-data",
    ("post", "/v1/discover/runs/{run}/clusters/{cluster_id}/enroll"): "application/json",
    ("post", "/v1/faces/remove"): "application/json",
    ("post", "/v1/faces/move"): "application/json",
    ("post", "/v1/merge"): "application/json",
    ("post", "/v1/restore"): "application/zip",
}
#: A collection's routes take the same bodies under /v1/collections/{collection}.
BODIES.update({(m, "/v1/collections/{collection}" + p[3:]): t for (m, p), t in list(BODIES.items())
               if p.startswith(("/v1/search", "/v1/verify", "/v1/subjects", "/v1/jobs", "/v1/discover", "/v1/faces",
                                "/v1/merge"))})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    people = make_face_variants(tmp_path_factory.mktemp("people"), n_variants=2)
    db = FaceDB(home=tmp_path_factory.mktemp("openapi") / "home", workers=1)
    try:
        db.enroll("person1", people["person1"])
        db.enroll("person2", people["person2"])
        keys = {s: db.create_key(f"{s}-key", s).key or "" for s in ("read", "write", "admin")}
        with TestClient(create_app(db)) as client:
            spec = client.get("/openapi.json").json()
            yield {"client": client, "spec": spec, "keys": keys, "people": people, "db": db}
    finally:
        db.close()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method, path, op


def _schema_of(media: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = media["schema"]
    return schema


def test_every_route_documents_its_body_answer_and_errors(env: dict[str, Any]) -> None:
    spec = env["spec"]
    seen_bodies = {}
    for method, path, op in _operations(spec):
        where = f"{method} {path}"
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert ok, where
        for media in op["responses"][ok[0]]["content"].values():
            schema = _schema_of(media)
            assert "$ref" in schema or "type" in schema, where
        if "requestBody" in op:
            (media_type, media), = op["requestBody"]["content"].items()
            assert op["requestBody"]["required"], where
            body = _schema_of(media)
            assert body.get("properties") or "$ref" in body or body.get("format") == "binary", where
            seen_bodies[(method, path)] = media_type
        if path.startswith("/v1/"):
            assert op["security"] == [{"apiKey": []}], where
            for status in ("401", "403", "503"):
                assert op["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}, (where, status)
        else:
            assert "security" not in op, where
        for status, res in op["responses"].items():
            if status.startswith(("4", "5")):
                assert res["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody"), (where, status)
        assert "HTTPValidationError" not in json.dumps(op), where  # FastAPI's own 422 shape is never sent
    assert seen_bodies == BODIES
    body_routes = {k for k in BODIES if BODIES[k] == "multipart/form-data"}
    for method, path in body_routes:
        assert "413" in spec["paths"][path][method]["responses"], path
    scheme = spec["components"]["securitySchemes"]["apiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "unix socket" in scheme["description"]
    error = spec["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "reason", "status", "kind"}


def test_multipart_bodies_are_the_request_models_and_binary_files(env: dict[str, Any]) -> None:
    paths = env["spec"]["paths"]

    def form(path: str) -> dict[str, Any]:
        return _schema_of(paths[path]["post"]["requestBody"]["content"]["multipart/form-data"])

    binary = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
    search = form("/v1/search")
    assert search["properties"]["images"] == {"type": "array", "items": binary}
    assert set(search["properties"]) == {"images", *r.SearchOptions.model_fields}
    assert search["properties"]["k"]["minimum"] == 1 and search["properties"]["k"]["maximum"] == 1000
    assert search["properties"]["by"]["enum"] == ["subject", "face"]
    verify = form("/v1/verify")
    assert verify["properties"]["image"] == binary
    assert set(verify["required"]) == {"image", "subject"}
    enroll_media = paths["/v1/subjects/{name}/images"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(enroll_media["schema"]["properties"]) == {"images", *r.EnrollOptions.model_fields}
    assert enroll_media["encoding"]["metadata"]["contentType"] == "application/json"
    keys = _schema_of(paths["/v1/keys"]["post"]["requestBody"]["content"]["application/json"])
    assert keys["properties"]["scope"]["enum"] == ["read", "write", "admin"]
    whoami = paths["/v1/whoami"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert whoami == {"$ref": "#/components/schemas/Whoami"}


def _closed(schema: Any) -> Any:
    """Every object schema that lists its properties refuses other keys."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


class Checker:
    """A generated client's view: the schema of each route and status, from the document only."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = _closed(copy.deepcopy(spec["components"]))
        self.checked: set[tuple[str, str, str]] = set()

    def check(self, res: Any, method: str, path: str) -> Any:
        status = str(res.status_code)
        op = self.spec["paths"][path][method]
        assert status in op["responses"], f"{method} {path} answered {status}, not documented: {res.text}"
        content = op["responses"][status].get("content", {})
        ctype = res.headers.get("content-type", "").split(";")[0]
        assert ctype in content, (method, path, status, ctype)
        if ctype == "application/json":
            schema = {**_closed(content[ctype]["schema"]), "components": self.components}
            errors = sorted(Draft202012Validator(schema).iter_errors(res.json()), key=str)
            assert not errors, (method, path, status, [e.message for e in errors[:3]])
        self.checked.add((method, path, status))
        return res


def test_live_answers_validate_against_the_document(env: dict[str, Any], tmp_path: Path) -> None:
    client: TestClient = env["client"]
    keys, people = env["keys"], env["people"]
    c = Checker(env["spec"])
    read, write, admin = ({"Authorization": f"Bearer {keys[s]}"} for s in ("read", "write", "admin"))

    def files(paths: list[Path], name: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
        return [(name, (p.name, p.read_bytes(), "image/jpeg")) for p in paths]

    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")

    c.check(client.get("/healthz"), "get", "/healthz")
    c.check(client.get("/v1/whoami", headers=read), "get", "/v1/whoami")
    c.check(client.get("/v1/whoami"), "get", "/v1/whoami")  # 401
    for params in ({"k": "3"}, {"by": "face", "reference": "true"}, {"scoring": "best", "threshold": "0.3"}):
        res = c.check(client.post("/v1/search", headers=read, data=params,
                                  files=files([people["person1"][0], people["person3"][0], junk])),
                      "post", "/v1/search")
        body = res.json()
        assert body["results"][0]["faces"][0]["identity"] == "person1"
        assert body["results"][2]["reason"] and not body["results"][2]["faces"]
    c.check(client.post("/v1/search", headers=read, data={"k": "0"}, files=files([junk])), "post", "/v1/search")
    c.check(client.post("/v1/verify", headers=read, data={"subject": "person2"},
                        files=files([people["person2"][0]], "image")), "post", "/v1/verify")
    found = c.check(client.post("/v1/discover", headers=read, files=files([people["person1"][0], junk])),
                    "post", "/v1/discover").json()
    assert found["clusters"][0]["subject"] == "person1" and found["failed"][0]["reason"]
    c.check(client.post("/v1/discover", headers=read, data={"cluster_threshold": "2"}, files=files([junk])),
            "post", "/v1/discover")  # 422
    runs, run_tpl = "/v1/discover/runs", "/v1/discover/runs/{run}"
    c.check(client.post(runs, headers=write, data={"name": "trip"}, files=files([people["person3"][0]])), "post", runs)
    c.check(client.post(runs, headers=write, data={"name": "trip"}, files=files([people["person3"][0]])),
            "post", runs)  # 409
    c.check(client.post(runs, headers=read, data={"name": "trip"}, files=files([junk])), "post", runs)  # 403
    enroll_tpl = f"{run_tpl}/clusters/{{cluster_id}}/enroll"
    c.check(client.post(f"{runs}/trip/clusters/1/enroll", headers=write, json={"name": "Zed"}), "post", enroll_tpl)
    c.check(client.post(f"{runs}/trip/clusters/9/enroll", headers=write, json={"name": "Zed"}), "post", enroll_tpl)
    c.check(client.delete(f"{runs}/trip", headers=write), "delete", run_tpl)
    c.check(client.delete(f"{runs}/trip", headers=write), "delete", run_tpl)  # 404
    c.check(client.post("/v1/verify", headers=read, data={"subject": "nobody"},
                        files=files([people["person2"][0]], "image")), "post", "/v1/verify")  # 404
    enrolled = c.check(client.post("/v1/subjects/person3/images", headers=write,
                                   data={"metadata": '{"team": "blue"}'},
                                   files=files([*people["person3"], junk])), "post", "/v1/subjects/{name}/images")
    assert enrolled.json()["n_failed"] == 1 and enrolled.json()["enrolled"] == 2
    c.check(client.post("/v1/subjects/person3/images", headers=read, files=files(people["person3"])),
            "post", "/v1/subjects/{name}/images")  # 403
    c.check(client.get("/v1/subjects", headers=read), "get", "/v1/subjects")
    c.check(client.get("/v1/subjects/person3", headers=read), "get", "/v1/subjects/{name}")
    c.check(client.get("/v1/subjects/nobody", headers=read), "get", "/v1/subjects/{name}")  # 404
    c.check(client.get("/v1/failures", headers=read), "get", "/v1/failures")
    c.check(client.get("/v1/stats", headers=read), "get", "/v1/stats")
    c.check(client.get("/v1/packs", headers=read), "get", "/v1/packs")
    c.check(client.get("/v1/check", headers=read), "get", "/v1/check")
    c.check(client.get("/v1/review", headers=read), "get", "/v1/review")
    face_id = env["db"].show("person3").images[0]["faces"][0]["face_id"]
    c.check(client.get(f"/v1/faces/{face_id}/thumbnail", headers=read), "get", "/v1/faces/{face_id}/thumbnail")
    c.check(client.get("/v1/faces/999999/thumbnail", headers=read), "get", "/v1/faces/{face_id}/thumbnail")
    # Single faces: listed, searched by id, moved there and back, removed; the errors they give.
    listed = c.check(client.get("/v1/faces", headers=read, params={"subject": "person1"}), "get", "/v1/faces").json()
    own = [x["face_id"] for x in listed["faces"]]
    c.check(client.get("/v1/faces", headers=read, params={"subject": "nobody"}), "get", "/v1/faces")  # 404
    c.check(client.get(f"/v1/faces/{own[0]}/search", headers=read), "get", "/v1/faces/{face_id}/search")
    c.check(client.get("/v1/faces/999999/search", headers=read), "get", "/v1/faces/{face_id}/search")  # 404
    c.check(client.post("/v1/faces/move", headers=write, json={"face_ids": own[:1], "to": "person2"}),
            "post", "/v1/faces/move")
    c.check(client.post("/v1/faces/move", headers=write, json={"face_ids": own[:1], "to": "person1"}),
            "post", "/v1/faces/move")
    c.check(client.post("/v1/faces/move", headers=read, json={"face_ids": own[:1], "to": "person2"}),
            "post", "/v1/faces/move")  # 403
    c.check(client.post("/v1/faces/remove", headers=write, json={"face_ids": [999999]}), "post", "/v1/faces/remove")
    c.check(client.post("/v1/faces/remove", headers=write, json={"face_ids": own[1:]}), "post", "/v1/faces/remove")
    c.check(client.post("/v1/merge", headers=write, json={"source": "nobody", "target": "person1"}), "post", "/v1/merge")
    c.check(client.post("/v1/merge", headers=write, json={"source": "person1"}), "post", "/v1/merge")  # 422
    c.check(client.patch("/v1/subjects/person3", headers=write, json={"name": "person2"}),
            "patch", "/v1/subjects/{name}")  # 409: taken
    c.check(client.patch("/v1/subjects/person3", headers=write, json={"name": "Carol"}), "patch", "/v1/subjects/{name}")
    gone = c.check(client.delete("/v1/subjects/Carol", headers=write, params={"vacuum": "true"}),
                   "delete", "/v1/subjects/{name}")
    assert "vacuum" in gone.json()
    c.check(client.post("/v1/check/repair", headers=admin), "post", "/v1/check/repair")
    c.check(client.post("/v1/vacuum", headers=write), "post", "/v1/vacuum")  # 403
    c.check(client.post("/v1/vacuum", headers=admin), "post", "/v1/vacuum")
    c.check(client.post("/v1/reindex", headers=admin), "post", "/v1/reindex")
    created = c.check(client.post("/v1/keys", headers=admin, json={"name": "door", "scope": "read"}), "post", "/v1/keys")
    assert created.json()["key"]
    c.check(client.post("/v1/keys", headers=admin, json={"name": "door", "scope": "read"}), "post", "/v1/keys")  # 409
    c.check(client.get("/v1/keys", headers=admin), "get", "/v1/keys")
    c.check(client.delete("/v1/keys/door", headers=admin), "delete", "/v1/keys/{name}")
    c.check(client.get("/v1/audit", headers=admin, params={"since": "24h"}), "get", "/v1/audit")
    c.check(client.get("/v1/audit", headers=admin, params={"since": "someday"}), "get", "/v1/audit")  # 422
    # Collections: created, every route of one called under its prefix, listed, deleted.
    made = c.check(client.post("/v1/collections", headers=admin, json={"name": "lobby"}), "post", "/v1/collections")
    assert made.status_code == 201
    c.check(client.post("/v1/collections", headers=admin, json={"name": "lobby"}), "post", "/v1/collections")  # 409
    c.check(client.get("/v1/collections", headers=admin), "get", "/v1/collections")
    pre, tpl = "/v1/collections/lobby", "/v1/collections/{collection}"
    c.check(client.post(f"{pre}/subjects/person1/images", headers=write, files=files(people["person1"][:1])),
            "post", f"{tpl}/subjects/{{name}}/images")
    c.check(client.post(f"{pre}/search", headers=read, files=files([people["person1"][1]])), "post", f"{tpl}/search")
    c.check(client.post(f"{pre}/verify", headers=read, data={"subject": "person1"},
                        files=files([people["person1"][1]], "image")), "post", f"{tpl}/verify")
    c.check(client.post(f"{pre}/discover", headers=read, files=files([people["person1"][1]])), "post", f"{tpl}/discover")
    c.check(client.post(f"{pre}/discover/runs", headers=write, data={"name": "door"},
                        files=files([people["person1"][1]])), "post", f"{tpl}/discover/runs")
    c.check(client.post(f"{pre}/discover/runs/door/clusters/1/enroll", headers=write, json={"name": "Bo"}),
            "post", f"{tpl}/discover/runs/{{run}}/clusters/{{cluster_id}}/enroll")
    c.check(client.delete(f"{pre}/discover/runs/door", headers=write), "delete", f"{tpl}/discover/runs/{{run}}")
    for path in ("/subjects", "/failures", "/stats", "/packs", "/check", "/review"):
        c.check(client.get(f"{pre}{path}", headers=read), "get", f"{tpl}{path}")
    c.check(client.get("/v1/collections/nowhere/subjects", headers=read), "get", f"{tpl}/subjects")  # 404
    c.check(client.get(f"{pre}/subjects/person1", headers=read), "get", f"{tpl}/subjects/{{name}}")
    lobby_face = env["db"].collection("lobby").show("person1").images[0]["faces"][0]["face_id"]
    c.check(client.get(f"{pre}/faces/{lobby_face}/thumbnail", headers=read), "get", f"{tpl}/faces/{{face_id}}/thumbnail")
    c.check(client.get(f"{pre}/faces", headers=read, params={"subject": "person1"}), "get", f"{tpl}/faces")
    c.check(client.get(f"{pre}/faces/{lobby_face}/search", headers=read), "get", f"{tpl}/faces/{{face_id}}/search")
    c.check(client.post(f"{pre}/subjects/visitor/images", headers=write, files=files(people["person2"][:1])),
            "post", f"{tpl}/subjects/{{name}}/images")
    visitor = env["db"].collection("lobby").show("visitor").images[0]["faces"][0]["face_id"]
    c.check(client.post(f"{pre}/faces/move", headers=write, json={"face_ids": [visitor], "to": "visitor"}),
            "post", f"{tpl}/faces/move")
    c.check(client.post(f"{pre}/faces/remove", headers=write, json={"face_ids": [face_id]}),
            "post", f"{tpl}/faces/remove")  # 404: a face of default is not lobby's
    merged = c.check(client.post(f"{pre}/merge", headers=write, json={"source": "visitor", "target": "person1"}),
                     "post", f"{tpl}/merge")
    assert merged.json()["faces"] == 1
    c.check(client.patch(f"{pre}/subjects/person1", headers=write, json={"name": "Ann"}), "patch", f"{tpl}/subjects/{{name}}")
    job = c.check(client.post(f"{pre}/jobs", headers=read, files=files([people["person1"][1]])), "post", f"{tpl}/jobs")
    for _ in range(600):  # polled until done: the queued, running and done answers all fit the document
        polled = c.check(client.get(f"{pre}/jobs/{job.json()['id']}", headers=read), "get", f"{tpl}/jobs/{{job_id}}")
        if polled.json()["status"] == "done":
            break
        time.sleep(0.1)
    assert polled.json()["result"]["results"][0]["faces"][0]["identity"] == "Ann"
    c.check(client.get(f"{pre}/jobs/{job.json()['id']}", headers=read), "get", f"{tpl}/jobs/{{job_id}}")  # 404: fetched
    c.check(client.post(f"{pre}/jobs", headers=read, data={"kind": "cook"}, files=files([people["person1"][1]])),
            "post", f"{tpl}/jobs")  # 422
    other = client.post("/v1/jobs", headers=read, files=files([people["person1"][1]])).json()
    c.check(client.post("/v1/jobs", headers=read, files=files([people["person1"][1]])), "post", "/v1/jobs")
    c.check(client.get(f"/v1/jobs/{other['id']}", headers=read), "get", "/v1/jobs/{job_id}")
    c.check(client.delete(f"/v1/jobs/{other['id']}", headers=read), "delete", "/v1/jobs/{job_id}")
    c.check(client.delete(f"{pre}/jobs/{other['id']}", headers=read), "delete", f"{tpl}/jobs/{{job_id}}")  # 404
    c.check(client.post(f"{pre}/check/repair", headers=admin), "post", f"{tpl}/check/repair")
    c.check(client.post(f"{pre}/reindex", headers=admin), "post", f"{tpl}/reindex")
    c.check(client.delete(f"{pre}/subjects/Ann", headers=write), "delete", f"{tpl}/subjects/{{name}}")
    c.check(client.delete("/v1/collections/lobby", headers=admin), "delete", "/v1/collections/{name}")
    snap = c.check(client.get("/v1/backup", headers=admin), "get", "/v1/backup")
    c.check(client.get("/v1/backup", headers=read), "get", "/v1/backup")  # 403
    c.check(client.post("/v1/restore", headers=admin, content=snap.content), "post", "/v1/restore")  # 409: not empty
    # Every route was called, and every error status a route can give was seen at least once.
    called = {(m, p) for m, p, _ in c.checked}
    assert called == {(m, p) for m, p, _ in _operations(env["spec"])}
    assert {s for _, _, s in c.checked} >= {"200", "401", "403", "404", "409", "422"}


def test_the_schema_refuses_what_the_server_never_sends(env: dict[str, Any]) -> None:
    """The closed schemas are strict enough to catch a changed answer (else the check above is void)."""
    components = _closed(copy.deepcopy(env["spec"]["components"]))
    schema = {"$ref": "#/components/schemas/VerifyResult", "components": components}
    good = env["client"].post("/v1/verify", headers={"Authorization": f"Bearer {env['keys']['read']}"},
                              data={"subject": "person1"},
                              files=[("image", ("a.jpg", env["people"]["person1"][1].read_bytes(), "image/jpeg"))]).json()
    assert Draft202012Validator(schema).is_valid(good)
    assert not Draft202012Validator(schema).is_valid({**good, "surprise": 1})
    assert not Draft202012Validator(schema).is_valid({k: v for k, v in good.items() if k != "match"})
