"""``POST /v1/search`` calls its dependencies itself (``facedb.server.inline``): the same checks
in the same order as the declared dependencies of the other routes (admission 503, then the key
401/403, then the collection 404, then the body 422), the admission place given back whatever
the answer, and the same OpenAPI operation (the key's security requirement included)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from facephotos import make_face_variants
from fastapi.testclient import TestClient

from facedb.api import FaceDB
from facedb.operations import search as search_module
from facedb.server.app import create_app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], bytes]]:
    people = make_face_variants(tmp_path_factory.mktemp("people"), n_variants=2)
    home = tmp_path_factory.mktemp("inline") / "home"
    db = FaceDB(home=home, workers=1)
    try:
        db.enroll("person1", people["person1"][:1])
        db.create_collection("lobby")
        keys = {"read": db.create_key("reader", "read").key or "",
                "lobby": db.create_key("lobby-reader", "read", collection="lobby").key or ""}
        with TestClient(create_app(db)) as client:
            yield client, keys, people["person1"][1].read_bytes()
    finally:
        db.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _search(client: TestClient, headers: dict[str, str], **kw: Any) -> Any:
    return client.post("/v1/search", headers=headers, **kw)


def test_a_search_answers_and_gives_its_admission_place_back(served: tuple[TestClient, dict[str, str], bytes]) -> None:
    client, keys, photo = served
    admission = client.app.state.admission  # type: ignore[attr-defined]
    r = _search(client, headers=_auth(keys["read"]), files=[("images", ("p.jpg", photo, "image/jpeg"))],
                data={"k": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["faces"][0]["identity"] == "person1"
    assert admission.inflight == 0
    # a refused one gives it back too
    assert _search(client, headers=_auth(keys["read"]), content=b"x").status_code == 422
    assert admission.inflight == 0


def test_the_key_is_checked_before_the_body_is_read(served: tuple[TestClient, dict[str, str], bytes]) -> None:
    client, keys, _ = served
    garbage = {"content": b"not multipart", "headers": {"Content-Type": "text/plain"}}
    r = client.post("/v1/search", **garbage)  # type: ignore[arg-type]
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = client.post("/v1/search", content=b"not multipart", headers={**_auth("fdb_nope"), "Content-Type": "text/plain"})
    assert r.status_code == 401
    # a key limited to another collection: 403, still before the body
    r = client.post("/v1/search", content=b"not multipart", headers={**_auth(keys["lobby"]), "Content-Type": "text/plain"})
    assert r.status_code == 403 and r.json()["kind"] == "forbidden"
    # the right key: now the body is read, and refused
    r = client.post("/v1/search", content=b"not multipart", headers={**_auth(keys["read"]), "Content-Type": "text/plain"})
    assert r.status_code == 422


def test_the_collection_is_checked_after_the_key(served: tuple[TestClient, dict[str, str], bytes]) -> None:
    client, keys, photo = served
    files = [("images", ("p.jpg", photo, "image/jpeg"))]
    assert client.post("/v1/collections/nowhere/search", files=files).status_code == 401
    r = client.post("/v1/collections/nowhere/search", files=files, headers=_auth(keys["read"]))
    assert r.status_code == 404, r.text
    r = client.post("/v1/collections/lobby/search", files=files, headers=_auth(keys["lobby"]))
    assert r.status_code == 200 and r.json()["results"][0]["faces"][0]["identity"] is None  # lobby is empty


def test_a_full_admission_answers_503_before_the_key_is_looked_at(
        served: tuple[TestClient, dict[str, str], bytes]) -> None:
    client, _, _ = served
    admission = client.app.state.admission  # type: ignore[attr-defined]
    saved = admission.inflight
    admission.inflight = admission.limit
    try:
        r = client.post("/v1/search", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["kind"] == "overloaded"
    finally:
        admission.inflight = saved


def test_the_openapi_operation_states_the_key_and_the_collection(
        served: tuple[TestClient, dict[str, str], bytes]) -> None:
    client, _, _ = served
    doc = client.get("/openapi.json").json()
    search = doc["paths"]["/v1/search"]["post"]
    verify = doc["paths"]["/v1/verify"]["post"]  # declared dependencies: what FastAPI documents
    assert search["security"] == verify["security"] == [{"apiKey": []}]
    assert set(search["responses"]) == {"200", "401", "403", "413", "422", "503"}
    assert "parameters" not in search
    prefixed = doc["paths"]["/v1/collections/{collection}/search"]["post"]
    assert [p["name"] for p in prefixed["parameters"]] == ["collection"]
    assert prefixed["security"] == [{"apiKey": []}] and "404" in prefixed["responses"]
    assert search["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["images"]


def test_no_route_resolves_dependencies_on_search(served: tuple[TestClient, dict[str, str], bytes]) -> None:
    """The point of the inline route: ``/v1/search`` declares no dependency but the collection
    path parameter of its prefixed copy."""
    client, _, _ = served
    from fastapi.routing import APIRoute

    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path.endswith("/search") and "POST" in route.methods:
            names = [d.call.__name__ for d in route.dependant.dependencies if d.call is not None]
            assert names in ([], ["collection_param"]), (route.path, names)


def test_a_one_photo_search_is_answered_on_the_event_loop(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With workers running (as under ``facedb serve``), a search of one photo with the default
    scoring is answered on the event loop (``FaceDB.search_async``: no thread), with the JSON the
    usual way gives and one audit entry; the other searches still go the usual way."""
    people = make_face_variants(tmp_path / "people", n_variants=3)
    db = FaceDB(home=tmp_path / "home", workers=2, exclusive=True)
    try:
        db.enroll("person1", people["person1"][:2])
        db.enroll("person2", people["person2"][:2])
        key = db.create_key("reader", "read").key or ""
        photo = people["person1"][2].read_bytes()
        want = db.search([photo], k=2).to_dict()
        db.search([photo], k=2)  # both workers have had a task: each is ready for the loop's way
        threaded: list[int] = []
        usual = db.search

        def counted(*a: Any, **kw: Any) -> Any:
            threaded.append(len(a[0]))
            return usual(*a, **kw)

        monkeypatch.setattr(db, "search", counted)
        before = len(db.audit())
        with TestClient(create_app(db)) as client:
            files = [("images", ("p.jpg", photo, "image/jpeg"))]
            r = _search(client, headers=_auth(key), files=files, data={"k": "2"})
            assert r.status_code == 200, r.text
            got = r.json()
            assert threaded == []  # not in a thread
            assert got["results"][0]["image"] == "p.jpg" and got["results"][0]["faces"][0]["identity"] == "person1"
            want["results"][0]["image"] = "p.jpg"
            assert got == want
            # the usual way: two photos, faces by the index, the reference mode
            r = _search(client, headers=_auth(key), files=files * 2, data={"k": "2"})
            assert r.status_code == 200 and len(r.json()["results"]) == 2 and threaded == [2]
            for extra in ({"by": "face"}, {"reference": "true"}, {"scoring": "best"}):
                r = _search(client, headers=_auth(key), files=files, data={"k": "2", **extra})
                assert r.status_code == 200, r.text
                assert r.json()["results"][0]["faces"][0]["identity"] == "person1"
            assert threaded == [2, 1, 1, 1]
            # an image that cannot be read is answered on the loop too, with its reason
            r = _search(client, headers=_auth(key), files=[("images", ("x.jpg", b"not an image", "image/jpeg"))])
            assert r.status_code == 200 and r.json()["results"][0]["reason"] and threaded == [2, 1, 1, 1]
            # a photo too large to write to a worker from the loop, and a catalog read over the
            # network (no memo: PostgreSQL) go the usual way, with the same answer
            monkeypatch.setattr(search_module, "LOOP_MAX_BYTES", len(photo) - 1)
            r = _search(client, headers=_auth(key), files=files, data={"k": "2"})
            assert r.json() == want and threaded == [2, 1, 1, 1, 1]
            monkeypatch.undo()
            monkeypatch.setattr(db, "search", counted)
            memo, db.store.catalog.memo = db.store.catalog.memo, None
            try:
                r = _search(client, headers=_auth(key), files=files, data={"k": "2"})
            finally:
                db.store.catalog.memo = memo
            assert r.json() == want and threaded == [2, 1, 1, 1, 1, 1]
        entries = [e for e in db.audit()[before:] if e.action == "search"]
        assert len(entries) == 8 and {e.actor for e in entries} == {"reader"}
    finally:
        db.close()
