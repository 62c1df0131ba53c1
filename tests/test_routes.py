"""The route matrix, in process: every route of ``create_app`` x no key (401), a key of too small
a scope (403), the scope it needs (its success status, and a body its response model accepts);
and bad form fields, bodies and parameters get 422 with the ErrorBody shape, never a 500.

FastAPI's ``TestClient`` over a real ``FaceDB`` in a temporary home, with real faces (the crops
of insightface's t1.jpg). TestClient is not the unix socket, so every /v1 call needs a key.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from facephotos import make_face_variants
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter

from facedb.api import FaceDB
from facedb.contract import faces as f
from facedb.contract import lifecycle as lc
from facedb.contract import models as m
from facedb.contract import requests as r
from facedb.contract import review as rv
from facedb.contract.discover import DiscoverReport, ForgetReport
from facedb.server.app import create_app

SCOPES = ("read", "write", "admin")


@dataclass
class Served:
    client: TestClient
    db: FaceDB
    keys: dict[str, str]
    people: dict[str, list[Path]]
    face_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def headers(self, scope: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"} if scope else {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    people = make_face_variants(tmp_path_factory.mktemp("people"), n_variants=2)
    home = tmp_path_factory.mktemp("routes") / "home"
    db = FaceDB(home=home, workers=1)
    try:
        db.enroll("person1", people["person1"])
        rep = db.enroll("person2", people["person2"])
        keys = {scope: db.create_key(f"{scope}-key", scope).key or "" for scope in SCOPES}
        # A second collection, with its own person1 (another photo), and keys limited to it.
        db.create_collection("lobby")
        db.collection("lobby").enroll("person1", people["person1"][1:])
        keys.update({f"lobby-{scope}": db.create_key(f"lobby-{scope}", scope, collection="lobby").key or ""
                     for scope in SCOPES})
        with TestClient(create_app(db)) as client:
            yield Served(client, db, keys, people, face_id=rep.face_ids[0])
    finally:
        db.close()


def _files(paths: list[Path], name: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(name, (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


@dataclass(frozen=True)
class Route:
    method: str
    path: str          # as the OpenAPI document names it
    scope: str | None  # None: no key needed
    model: Any         # the response model (a class, or list[...]) or None for an image answer


#: Every route of the API with the scope it needs; ``test_the_matrix_covers_every_route`` keeps
#: it complete.
SERVER_WIDE = [
    Route("get", "/healthz", None, r.Health),
    Route("get", "/v1/whoami", "read", r.Whoami),
    Route("post", "/v1/vacuum", "admin", m.VacuumReport),
    Route("get", "/v1/keys", "admin", list[m.KeyInfo]),
    Route("post", "/v1/keys", "admin", r.CreatedKey),
    Route("delete", "/v1/keys/{name}", "admin", m.KeyInfo),
    Route("get", "/v1/audit", "admin", list[m.AuditEntry]),
    Route("get", "/v1/collections", "admin", list[m.CollectionInfo]),
    Route("post", "/v1/collections", "admin", m.CollectionInfo),
    Route("delete", "/v1/collections/{name}", "admin", m.CollectionInfo),
    Route("get", "/v1/backup", "admin", None),
    Route("post", "/v1/restore", "admin", lc.RestoreReport),
]
#: The routes of one collection: under /v1 they mean ``default``.
PER_COLLECTION = [
    Route("get", "/v1/stats", "read", m.Stats),
    Route("get", "/v1/packs", "read", list[m.PackStatus]),
    Route("post", "/v1/search", "read", m.SearchReport),
    Route("post", "/v1/verify", "read", m.VerifyResult),
    Route("get", "/v1/subjects", "read", list[m.SubjectInfo]),
    Route("get", "/v1/failures", "read", list[m.FailureRecord]),
    Route("get", "/v1/subjects/{name}", "read", m.SubjectDetail),
    Route("get", "/v1/faces/{face_id}/thumbnail", "read", None),
    Route("get", "/v1/check", "read", m.CheckReport),
    Route("get", "/v1/review", "read", rv.ReviewReport),
    Route("post", "/v1/subjects/{name}/images", "write", m.ImportReport),
    Route("patch", "/v1/subjects/{name}", "write", r.Renamed),
    Route("delete", "/v1/subjects/{name}", "write", m.DeleteReport),
    Route("post", "/v1/check/repair", "admin", m.CheckReport),
    Route("post", "/v1/reindex", "admin", m.ReindexReport),
    Route("post", "/v1/jobs", "read", r.JobInfo),
    Route("get", "/v1/jobs/{job_id}", "read", r.JobInfo),
    Route("delete", "/v1/jobs/{job_id}", "read", r.JobInfo),
    Route("post", "/v1/discover", "read", DiscoverReport),
    Route("post", "/v1/discover/runs", "write", DiscoverReport),
    Route("post", "/v1/discover/runs/{run}/clusters/{cluster_id}/enroll", "write", m.EnrollReport),
    Route("delete", "/v1/discover/runs/{run}", "write", ForgetReport),
    Route("get", "/v1/faces", "read", f.FacesReport),
    Route("get", "/v1/faces/{face_id}/search", "read", f.FaceSearchReport),
    Route("post", "/v1/faces/remove", "write", f.FacesRemoveReport),
    Route("post", "/v1/faces/move", "write", f.MoveReport),
    Route("post", "/v1/merge", "write", f.MergeReport),
]
IN_COLLECTION = [Route(x.method, "/v1/collections/{collection}" + x.path[3:], x.scope, x.model) for x in PER_COLLECTION]
ROUTES = SERVER_WIDE + PER_COLLECTION + IN_COLLECTION


def _concrete(route: Route, served: Served) -> str:
    return (route.path.replace("{name}", "person1").replace("{face_id}", str(served.face_id))
            .replace("{collection}", "lobby").replace("{job_id}", "no-such-job").replace("{run}", "trip")
            .replace("{cluster_id}", "1"))


def _request(served: Served, route: Route, scope: str | None, path: str | None = None, **kwargs: Any) -> Any:
    return served.client.request(route.method.upper(), path or _concrete(route, served),
                                 headers=served.headers(scope), **kwargs)


def _error(res: Any, status: int) -> r.ErrorBody:
    assert res.status_code == status, (res.request.url, res.status_code, res.text)
    body = r.ErrorBody.model_validate(res.json())
    assert body.status == status and body.error
    return body


def _valid(model: Any, body: Any) -> Any:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model.model_validate(body)
    return TypeAdapter(model).validate_python(body)


def test_the_matrix_covers_every_route(served: Served) -> None:
    spec = served.client.get("/openapi.json").json()
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert documented == {(x.method, x.path) for x in ROUTES}


@pytest.mark.parametrize("route", [x for x in ROUTES if x.scope], ids=lambda x: f"{x.method} {x.path}")
def test_no_key_is_401_and_a_smaller_scope_403(served: Served, route: Route) -> None:
    res = _request(served, route, None)
    assert _error(res, 401).kind == "unauthorized"
    assert res.headers["WWW-Authenticate"].startswith("Bearer")
    bad = served.client.request(route.method.upper(), _concrete(route, served),
                                headers={"Authorization": "Bearer fdb_not-a-key"})
    _error(bad, 401)
    for scope in SCOPES[:SCOPES.index(route.scope or "read")]:
        assert _error(_request(served, route, scope), 403).kind == "forbidden"
    # Nothing a refused call sent reached the data.
    assert [s.name for s in served.db.subjects()][:2] == ["person1", "person2"]


def test_every_route_answers_its_model_with_the_right_scope(served: Served) -> None:
    """The success calls, in an order where each one has something to act on."""
    by = {(x.method, x.path): x for x in ROUTES}
    p1, p2, p3 = served.people["person1"], served.people["person2"], served.people["person3"]

    def ok(method: str, path: str, concrete: str | None = None, status: int = 200, **kwargs: Any) -> Any:
        route = by[(method, path)]
        res = _request(served, route, route.scope, concrete, **kwargs)
        assert res.status_code == status, (path, res.status_code, res.text)
        if route.model is None:
            return res
        return _valid(route.model, res.json())

    health = ok("get", "/healthz")
    assert health.status == "ok" and health.faces == 4
    assert ok("get", "/v1/whoami").scope == "read"
    assert ok("get", "/v1/stats").subjects == 2
    assert any(p.active for p in ok("get", "/v1/packs"))
    rep = ok("post", "/v1/search", files=_files([p1[0], p3[0]]), data={"k": "2"})
    assert [res.faces[0].identity for res in rep.results] == ["person1", None]
    assert rep.k == 2
    job = ok("post", "/v1/jobs", status=202, files=_files([p1[0], p3[0]]), data={"k": "2", "kind": "search"})
    assert job.status in ("queued", "running", "done") and job.total == 2
    for _ in range(600):
        polled = ok("get", "/v1/jobs/{job_id}", f"/v1/jobs/{job.id}")
        if polled.status == "done":
            break
        time.sleep(0.1)
    assert polled.result is not None and polled.result.to_dict()["results"] == rep.to_dict()["results"]
    another = ok("post", "/v1/jobs", status=202, files=_files([p1[0]]))
    assert ok("delete", "/v1/jobs/{job_id}", f"/v1/jobs/{another.id}").status == "cancelled"
    disc = ok("post", "/v1/discover", files=_files([p1[0], p3[0], p1[1]]))
    assert [(c.subject, c.size) for c in disc.clusters] == [("person1", 2), (None, 1)]
    saved = ok("post", "/v1/discover/runs", files=_files([p3[0]]), data={"name": "trip"})
    assert saved.run == "trip" and saved.clusters[0].subject is None
    from_run = ok("post", "/v1/discover/runs/{run}/clusters/{cluster_id}/enroll", json={"name": "Zed"})
    assert from_run.subject == "Zed" and [f.reason for f in from_run.failed] == ["not_on_disk"]  # sent as bytes
    forgot = ok("delete", "/v1/discover/runs/{run}")
    assert (forgot.run, forgot.faces) == ("trip", 1)
    ver = ok("post", "/v1/verify", files=_files([p2[0]], "image"), data={"subject": "person2"})
    assert ver.match and ver.subject == "person2"
    assert [s.name for s in ok("get", "/v1/subjects")] == ["person1", "person2"]
    assert ok("get", "/v1/failures") == []
    assert ok("get", "/v1/subjects/{name}").name == "person1"
    thumb = ok("get", "/v1/faces/{face_id}/thumbnail")
    assert thumb.headers["content-type"] in ("image/jpeg", "image/svg+xml") and thumb.content
    assert ok("get", "/v1/check").clean
    review = ok("get", "/v1/review")
    assert review.clean and (review.subjects, review.faces) == (2, 4)
    listed = ok("get", "/v1/faces", params={"subject": "person2"})
    assert listed.subject == "person2" and len(listed.faces) == 2
    near = ok("get", "/v1/faces/{face_id}/search", params={"k": "1"})
    assert near.excluded == [served.face_id] and near.identity == "person2" and len(near.matches) == 1
    enrolled = ok("post", "/v1/subjects/{name}/images", "/v1/subjects/person3/images", files=_files(p3),
                  data={"metadata": json.dumps({"team": "blue"}), "multi_face": "largest"})
    assert enrolled.enrolled == 2 and enrolled.subjects[0].subject == "person3"
    assert served.db.show("person3").metadata == {"team": "blue"}
    renamed = ok("patch", "/v1/subjects/{name}", "/v1/subjects/person3", json={"name": "Carol"})
    assert (renamed.old, renamed.new) == ("person3", "Carol")
    gone = ok("delete", "/v1/subjects/{name}", "/v1/subjects/Carol")
    assert (gone.subject, gone.faces) == ("Carol", 2)
    assert ok("post", "/v1/check/repair").clean
    assert ok("post", "/v1/vacuum").bytes_after > 0
    assert ok("post", "/v1/reindex").reindexed == 4
    assert {k.name for k in ok("get", "/v1/keys")} >= {"read-key", "write-key", "admin-key"}
    created = ok("post", "/v1/keys", json={"name": "door", "scope": "read"})
    assert created.key.startswith("fdb_") and created.scope == "read"
    revoked = ok("delete", "/v1/keys/{name}", "/v1/keys/door")
    assert not revoked.active
    actions = [e.action for e in ok("get", "/v1/audit", params={"since": "1h", "limit": "50"})]
    assert "enroll" in actions and "delete" in actions


BAD = [
    ("POST", "/v1/search", {"data": {"k": "0"}, "files": "face"}, "k"),
    ("POST", "/v1/search", {"data": {"k": "many"}, "files": "face"}, "k"),
    ("POST", "/v1/search", {"data": {"threshold": "2.5"}, "files": "face"}, "threshold"),
    ("POST", "/v1/search", {"data": {"threshold": "nan"}, "files": "face"}, "threshold"),
    ("POST", "/v1/search", {"data": {"by": "photo"}, "files": "face"}, "by"),
    ("POST", "/v1/search", {"data": {"scoring": "worst"}, "files": "face"}, "scoring"),
    ("POST", "/v1/search", {"data": {"reference": "maybe"}, "files": "face"}, "reference"),
    ("POST", "/v1/search", {"data": {"kk": "3"}, "files": "face"}, "kk"),
    ("POST", "/v1/search", {"data": {"k": "3"}}, "images"),
    ("POST", "/v1/search", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, "multipart"),
    ("POST", "/v1/discover", {"data": {"cluster_threshold": "1.5"}, "files": "face"}, "cluster_threshold"),
    ("POST", "/v1/discover", {"data": {"threshold": "x"}, "files": "face"}, "threshold"),
    ("POST", "/v1/discover", {"data": {"cluster_threshold": "0.4"}}, "images"),
    ("POST", "/v1/discover/runs", {"files": "face"}, "name"),
    ("POST", "/v1/discover/runs", {"data": {"name": " x"}, "files": "face"}, "run name"),
    ("POST", "/v1/discover/runs/trip/clusters/1/enroll", {"json": {"nom": "x"}}, "name"),
    ("POST", "/v1/discover/runs/trip/clusters/one/enroll", {"json": {"name": "x"}}, "cluster_id"),
    ("POST", "/v1/discover/runs/trip/clusters/1/enroll", {"json": {"name": "x", "quality_floor": "sharp"}},
     "quality_floor"),
    ("POST", "/v1/verify", {"data": {"subject": "person1", "threshold": "-1"}, "files": "image"}, "threshold"),
    ("POST", "/v1/verify", {"files": "image"}, "subject"),
    ("POST", "/v1/subjects/person1/images", {"data": {"metadata": "[1, 2]"}, "files": "face"}, "JSON object"),
    ("POST", "/v1/subjects/person1/images", {"data": {"metadata": "{not json"}, "files": "face"}, "JSON"),
    ("POST", "/v1/subjects/person1/images", {"data": {"multi_face": "all"}, "files": "face"}, "multi_face"),
    ("POST", "/v1/subjects/person1/images", {"data": {"quality_floor": "sharp"}, "files": "face"}, "quality_floor"),
    ("PATCH", "/v1/subjects/person1", {"content": b"{not json"}, "JSON"),
    ("PATCH", "/v1/subjects/person1", {"json": {"name": 3}}, "name"),
    ("PATCH", "/v1/subjects/person1", {"json": ["person9"]}, "JSON object"),
    ("POST", "/v1/keys", {"json": {"name": "x", "scope": "root"}}, "scope"),
    ("POST", "/v1/keys", {"json": {"name": "x"}}, "scope"),
    ("GET", "/v1/audit?since=yesterday", {}, "since"),
    ("GET", "/v1/audit?limit=0", {}, "limit"),
    ("GET", "/v1/audit?limit=ten", {}, "limit"),
    ("GET", "/v1/faces/abc/thumbnail", {}, "face_id"),
    ("GET", "/v1/faces/1/thumbnail?size=4096", {}, "size"),
    ("DELETE", "/v1/subjects/person1?vacuum=perhaps", {}, "vacuum"),
    ("GET", "/v1/faces", {}, "subject"),
    ("GET", "/v1/faces/1/search?k=0", {}, "k"),
    ("GET", "/v1/faces/1/search?by=photo", {}, "by"),
    ("GET", "/v1/faces/1/search?threshold=3", {}, "threshold"),
    ("GET", "/v1/faces/x/search", {}, "face_id"),
    ("POST", "/v1/faces/remove", {"json": {"face_ids": []}}, "face_ids"),
    ("POST", "/v1/faces/remove", {"json": {"face_ids": ["one"]}}, "face_ids"),
    ("POST", "/v1/faces/remove", {"json": {"ids": [1]}}, "ids"),
    ("POST", "/v1/faces/remove", {"content": b"{not json"}, "JSON"),
    ("POST", "/v1/faces/move", {"json": {"face_ids": [1]}}, "to"),
    ("POST", "/v1/merge", {"json": {"source": "person1"}}, "target"),
    ("POST", "/v1/restore?reindex_from_images=maybe", {"content": b"PK"}, "reindex_from_images"),
    ("POST", "/v1/restore", {"content": b"PK\x03\x04 not a zip"}, "not a facedb snapshot"),
    ("POST", "/v1/restore", {}, "empty"),
]


@pytest.mark.parametrize("method,path,kwargs,says", BAD, ids=[f"{b[0]} {b[1]} {b[3]}" for b in BAD])
def test_bad_fields_are_422_error_bodies_never_500(served: Served, method: str, path: str, kwargs: dict[str, Any],
                                                   says: str) -> None:
    kwargs = dict(kwargs)
    if kwargs.get("files") == "face":
        kwargs["files"] = _files(served.people["person1"][:1])
    elif kwargs.get("files") == "image":
        kwargs["files"] = _files(served.people["person1"][:1], "image")
    headers = {**served.headers("admin"), **kwargs.pop("headers", {})}
    before = [(s.name, s.faces) for s in served.db.subjects()]
    res = served.client.request(method, path, headers=headers, **kwargs)
    body = _error(res, 422)
    assert body.kind == "usage" and says in body.error, body.error
    assert "\n" not in body.error
    assert [(s.name, s.faces) for s in served.db.subjects()] == before


def test_form_values_are_read_as_the_models_read_them(served: Served) -> None:
    """Form text is converted by the request model: "TRUE" is a boolean, "0.9" a float."""
    res = served.client.post("/v1/search", headers=served.headers("read"),
                             files=_files(served.people["person1"][:1]),
                             data={"reference": "TRUE", "threshold": "0.9", "by": "face", "k": "1"})
    rep = _valid(m.SearchReport, res.json())
    assert rep.reference and rep.threshold == 0.9 and rep.by == "face" and rep.k == 1
    assert rep.results[0].faces[0].reference_agrees is True


def test_unknown_routes_and_methods_answer_error_bodies(served: Served) -> None:
    _error(served.client.get("/v1/nowhere", headers=served.headers("read")), 404)
    _error(served.client.put("/v1/subjects", headers=served.headers("admin")), 405)


def test_the_docs_page_is_served_from_the_package(served: Served) -> None:
    page = served.client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("/openapi.json", "")  # nothing from a CDN
    for asset in ("/docs/static/docs.js", "/docs/static/docs.css"):
        res = served.client.get(asset)
        assert res.status_code == 200 and "https://" not in res.text and "http://" not in res.text
    assert "/openapi.json" in served.client.get("/docs/static/docs.js").text


def test_the_cli_shows_the_values_the_models_accept() -> None:
    """The CLI's options carry no checks of their own (the models do them); their help must
    still name exactly the values the models accept."""
    from typing import get_args

    from facedb.cli import cli

    def metavar(command: str, option: str, group: str | None = None) -> str:
        cmd = cli.commands[group].commands[command] if group else cli.commands[command]  # type: ignore[attr-defined]
        return next(p.metavar for p in cmd.params if p.name == option)

    def literal(model: type[BaseModel], name: str) -> str:
        return "|".join(get_args(model.model_fields[name].annotation))

    assert metavar("search", "by") == literal(r.SearchOptions, "by")
    assert metavar("search", "scoring") == literal(r.SearchOptions, "scoring")
    assert metavar("enroll", "multi_face") == literal(r.EnrollOptions, "multi_face")
    assert metavar("import", "multi_face") == literal(r.EnrollOptions, "multi_face")
    assert metavar("create", "scope", "keys") == literal(r.KeyCreateBody, "scope")
    k = r.SearchOptions.model_fields["k"].metadata
    assert metavar("search", "k") == f"{k[0].ge}..{k[1].le}"


def _left_out(dumped: Any, shown: Any) -> Any:
    """``dumped`` without the keys ``shown`` leaves out (checked to be None there), at any depth;
    derived values (in ``shown`` only) are added from it."""
    if isinstance(dumped, dict) and isinstance(shown, dict):
        assert all(v is None for k, v in dumped.items() if k not in shown), set(dumped) - set(shown)
        return {k: _left_out(dumped[k], v) if k in dumped else v for k, v in shown.items()}
    if isinstance(dumped, list) and isinstance(shown, list):
        return [_left_out(a, b) for a, b in zip(dumped, shown)]
    return dumped


def test_results_round_trip_their_json_without_building_validators(served: Served) -> None:
    """``to_dict`` is what pydantic dumps (less the keys some results leave out when None, plus
    the derived values),
    and ``from_dict`` rebuilds an equal result, as the thin client does with every answer."""
    db = served.db
    rep = db.search([served.people["person1"][0]], k=2, reference=True)
    results: list[m.Result] = [rep, *db.subjects(), db.show("person1"), db.stats(), db.check(), *db.keys(),
                               *db.packs(), *db.audit(limit=3), db.review()]
    for res in results:
        d = res.to_dict()
        assert json.loads(json.dumps(d)) == d
        again = type(res).from_dict(d)
        assert again == res and again.to_dict() == d, type(res).__name__
        dumped = TypeAdapter(type(res)).dump_python(res, mode="json")
        assert _left_out(dumped, d) == d  # what pydantic dumps, less keys left out when None
        assert TypeAdapter(type(res)).validate_python(d) == res  # the JSON fits the documented schema
    face = rep.results[0].faces[0].to_dict()
    assert face["reference_agrees"] is True and "key" not in db.keys()[0].to_dict()
    assert list(rep.to_dict()) == ["pack", "threshold", "by", "k", "scoring", "reference", "results"]
    assert list(db.check().to_dict())[-1] == "clean"


@pytest.mark.parametrize("args,says", [
    (["search", "x.jpg", "-k", "0"], "-k: "),
    (["search", "x.jpg", "-k", "many"], "-k: "),
    (["search", "x.jpg", "--by", "photo"], "--by: "),
    (["search", "x.jpg", "--threshold", "2.5"], "--threshold: "),
    (["search", "x.jpg", "--scoring", "worst"], "--scoring: "),
    (["verify", "x.jpg", "Ada", "--threshold", "-1"], "--threshold: "),
    (["enroll", "Ada", "x.jpg", "--metadata", "[1]"], "--metadata: must be a JSON object"),
    (["enroll", "Ada", "x.jpg", "--multi-face", "all"], "--multi-face: "),
    (["enroll", "Ada", "x.jpg", "--min-quality", "sharp"], "--min-quality: "),
    (["import", ".", "--multi-face", "all"], "--multi-face: "),
    (["keys", "create", "door", "--scope", "root"], "--scope: "),
    (["audit", "--limit", "0"], "--limit: "),
    (["audit", "--since", "someday"], "--since: use an ISO date/time"),
])
def test_cli_options_are_checked_by_the_request_models(tmp_path: Path, args: list[str], says: str) -> None:
    """Exit 2 with the model's message naming the option, before any database is opened."""
    from click.testing import CliRunner

    from facedb.cli import cli

    home = tmp_path / "home"
    res = CliRunner().invoke(cli, ["--home", str(home), *args])
    assert res.exit_code == 2, res.output
    assert says in res.output and "Traceback" not in res.output, res.output
    assert not home.exists()


def test_a_collection_has_its_own_subjects_behind_the_same_routes(served: Served) -> None:
    """Every route of a collection under /v1/collections/lobby answers for lobby alone."""
    h = served.headers("admin")
    c = served.client
    lobby = "/v1/collections/lobby"
    subjects = TypeAdapter(list[m.SubjectInfo]).validate_python(c.get(f"{lobby}/subjects", headers=h).json())
    assert [(x.name, x.faces) for x in subjects] == [("person1", 1)]
    assert c.get(f"{lobby}/stats", headers=h).json()["subjects"] == 1
    # person2 is enrolled in default only: unknown in lobby, named in default.
    probe = _files(served.people["person2"][:1])
    in_lobby = _valid(m.SearchReport, c.post(f"{lobby}/search", headers=h, files=probe).json())
    assert in_lobby.results[0].faces[0].identity is None
    assert all(x.subject != "person2" for x in in_lobby.results[0].faces[0].matches)
    in_default = _valid(m.SearchReport, c.post("/v1/search", headers=h, files=probe).json())
    assert in_default.results[0].faces[0].identity == "person2"
    # The same name in two collections: two subjects, each with its own faces.
    detail = _valid(m.SubjectDetail, c.get(f"{lobby}/subjects/person1", headers=h).json())
    assert len(detail.images) == 1
    ver = _valid(m.VerifyResult, c.post(f"{lobby}/verify", headers=h, files=_files(served.people["person1"][:1], "image"),
                                               data={"subject": "person1"}).json())
    assert ver.match
    assert _valid(m.CheckReport, c.get(f"{lobby}/check", headers=h).json()).clean
    # Writes stay in the collection.
    enrolled = _valid(m.ImportReport, c.post(f"{lobby}/subjects/visitor/images", headers=h,
                                                    files=_files(served.people["person3"][:1])).json())
    assert enrolled.enrolled == 1
    assert "visitor" not in {x.name for x in served.db.subjects()}
    assert c.delete(f"{lobby}/subjects/visitor", headers=h).json()["faces"] == 1
    # An unknown collection is 404 after the key check, never before it.
    _error(c.get("/v1/collections/nowhere/subjects", headers=h), 404)
    _error(c.get("/v1/collections/nowhere/subjects"), 401)
    # A collection's audit rows say which collection.
    entries = TypeAdapter(list[m.AuditEntry]).validate_python(c.get("/v1/audit", headers=h).json())
    assert any(e.collection == "lobby" and e.action == "enroll" for e in entries)


@pytest.mark.parametrize("scope", SCOPES)
def test_a_key_limited_to_a_collection_is_refused_everywhere_else(served: Served, scope: str) -> None:
    c = served.client
    limited = served.headers(f"lobby-{scope}")
    assert c.get("/v1/collections/lobby/subjects", headers=limited).status_code == 200
    assert _error(c.get("/v1/subjects", headers=limited), 403).kind == "forbidden"
    assert _error(c.get("/v1/collections/default/subjects", headers=limited), 403).kind == "forbidden"
    # Server-wide calls would show or change other collections.
    for method, path in (("GET", "/v1/collections"), ("GET", "/v1/keys"), ("GET", "/v1/audit"),
                         ("POST", "/v1/vacuum")):
        assert _error(c.request(method, path, headers=limited), 403).kind == "forbidden"
    # Any valid key may ask who it is.
    assert c.get("/v1/whoami", headers=limited).json()["scope"] == scope
    # The refusals are in the audit trail, with the route template and the key's name only.
    refused = [e for e in served.db.audit(limit=200) if e.action == "refused" and e.actor == f"lobby-{scope}"]
    assert refused and all(e.outcome == "forbidden" for e in refused)
    assert any(e.detail == "GET /v1/subjects" for e in refused), [e.detail for e in refused]


def test_collections_are_created_and_deleted_over_http(served: Served) -> None:
    c, h = served.client, served.headers("admin")
    res = c.post("/v1/collections", headers=h, json={"name": "garden", "threshold": 0.45})
    assert res.status_code == 201, res.text
    made = _valid(m.CollectionInfo, res.json())
    assert (made.name, made.threshold, made.subjects) == ("garden", 0.45, 0)
    _error(c.post("/v1/collections", headers=h, json={"name": "garden"}), 409)
    _error(c.post("/v1/collections", headers=h, json={"name": "x", "threshold": 3}), 422)
    _error(c.post("/v1/collections", headers=h, json={"nom": "x"}), 422)
    assert c.post("/v1/collections/garden/subjects/guest/images", headers=h,
                  files=_files(served.people["person3"][:1])).json()["enrolled"] == 1
    names = [x.name for x in TypeAdapter(list[m.CollectionInfo]).validate_python(c.get("/v1/collections", headers=h).json())]
    assert names[0] == "default" and {"lobby", "garden"} <= set(names)
    gone = _valid(m.CollectionInfo, c.delete("/v1/collections/garden", headers=h).json())
    assert (gone.name, gone.subjects, gone.faces) == ("garden", 1, 1)
    _error(c.get("/v1/collections/garden/subjects", headers=h), 404)
    _error(c.delete("/v1/collections/default", headers=h), 400)


def test_the_request_log_names_routes_by_their_template(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    """Never a subject name nor a file name in the log: a route's template, a mounted asset
    folder as ``/static/{file}``, and a path that matched nothing as ``(unmatched)``."""
    import logging

    caplog.set_level(logging.INFO, logger="facedb.server")
    h = served.headers("read")
    assert served.client.get("/static/app.css").status_code == 200
    assert served.client.get("/docs/static/no-such-file.js").status_code == 404
    assert served.client.get("/v1/subjects/person1", headers=h).status_code == 200
    assert served.client.get("/no/such/route").status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "facedb.server"]
    assert any(x.startswith("GET /static/{file} 200 ") for x in lines), lines
    assert any(x.startswith("GET /docs/static/{file} 404 ") for x in lines), lines
    assert any(x.startswith("GET /v1/subjects/{name:path} 200 ") for x in lines), lines
    assert any(x.startswith("GET (unmatched) 404 ") for x in lines), lines
    assert not any("person1" in x or "app.css" in x for x in lines), lines


def test_the_thin_clients_defaults_are_the_contracts() -> None:
    """The client writes a few defaults as literals (importing their modules would cost every
    command its start-up time): they must be the contract's."""
    import inspect

    from facedb.analysis.video import DEFAULT_SAMPLE_FPS
    from facedb.client import Client
    from facedb.contract.discover import DEFAULT_CLUSTER_THRESHOLD

    assert inspect.signature(Client.discover).parameters["cluster_threshold"].default == DEFAULT_CLUSTER_THRESHOLD
    for verb in (Client.search, Client.discover):
        assert inspect.signature(verb).parameters["sample_fps"].default == DEFAULT_SAMPLE_FPS
    for verb in (FaceDB.search, FaceDB.discover):
        assert inspect.signature(verb).parameters["sample_fps"].default == DEFAULT_SAMPLE_FPS
