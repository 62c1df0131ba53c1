"""A key found active is trusted for ``KEY_TRUST_S`` without a catalog read (``Gatekeeper``):
one catalog read for a burst of requests, a key revoked through this process refused on the
very next request, one revoked behind the server's back (another process sharing the stores)
refused once the trust runs out, and a trusted key still held to its scope and collection."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from facephotos import make_face_variants
from fastapi.testclient import TestClient

from facedb.api import FaceDB
from facedb.operations import gatekeeper
from facedb.server.app import create_app


@pytest.fixture()
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, FaceDB, bytes]]:
    people = make_face_variants(tmp_path_factory.mktemp("people"), n_variants=2)
    db = FaceDB(home=tmp_path_factory.mktemp("trust") / "home", workers=1)
    try:
        db.enroll("person1", people["person1"][:1])
        db.create_collection("lobby")
        with TestClient(create_app(db)) as client:
            yield client, db, people["person1"][1].read_bytes()
    finally:
        db.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _count_reads(db: FaceDB, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    catalog = db.gate.catalog
    real = catalog.active_key

    def counted(digest: str) -> Any:
        calls.append(digest)
        return real(digest)

    monkeypatch.setattr(catalog, "active_key", counted)
    return calls


def test_a_burst_of_requests_reads_the_key_once(served: tuple[TestClient, FaceDB, bytes],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    client, db, probe = served
    key = db.create_key("reader", "read").key or ""
    calls = _count_reads(db, monkeypatch)
    for _ in range(5):
        r = client.post("/v1/search", headers=_auth(key), files={"images": ("p.jpg", probe, "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["faces"][0]["identity"] == "person1"
    assert len(calls) == 1


def test_a_key_revoked_here_fails_on_the_next_request(served: tuple[TestClient, FaceDB, bytes]) -> None:
    client, db, _ = served
    key = db.create_key("soon-gone", "read").key or ""
    assert client.get("/v1/subjects", headers=_auth(key)).status_code == 200  # now trusted
    db.revoke_key("soon-gone")
    r = client.get("/v1/subjects", headers=_auth(key))
    assert r.status_code == 401 and "revoked" in r.json()["error"]


def test_a_key_revoked_by_another_process_fails_once_the_trust_runs_out(
        served: tuple[TestClient, FaceDB, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    client, db, _ = served
    key = db.create_key("elsewhere", "read").key or ""
    now = [1000.0]
    monkeypatch.setattr(gatekeeper.time, "monotonic", lambda: now[0])
    assert client.get("/v1/subjects", headers=_auth(key)).status_code == 200
    db.gate.catalog.revoke_key("elsewhere")  # another process's revoke: this server is not told
    now[0] += gatekeeper.KEY_TRUST_S / 2
    assert client.get("/v1/subjects", headers=_auth(key)).status_code == 200  # still trusted: the documented window
    now[0] += gatekeeper.KEY_TRUST_S
    r = client.get("/v1/subjects", headers=_auth(key))
    assert r.status_code == 401 and "revoked" in r.json()["error"]


def test_a_trusted_key_keeps_its_scope_and_collection_and_refusals_are_audited(
        served: tuple[TestClient, FaceDB, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    client, db, _ = served
    reader = db.create_key("just-reading", "read").key or ""
    lobby = db.create_key("lobby-only", "write", collection="lobby").key or ""
    assert client.get("/v1/subjects", headers=_auth(reader)).status_code == 200
    assert client.get("/v1/collections/lobby/subjects", headers=_auth(lobby)).status_code == 200
    calls = _count_reads(db, monkeypatch)
    r = client.delete("/v1/subjects/person1", headers=_auth(reader))
    assert r.status_code == 403 and "scope 'read'" in r.json()["error"]
    r = client.get("/v1/subjects", headers=_auth(lobby))
    assert r.status_code == 403 and "limited to collection 'lobby'" in r.json()["error"]
    assert calls == []  # both decided from the trusted keys
    assert [s.name for s in db.subjects()] == ["person1"]
    refused = [e for e in db.audit() if e.action == "refused"]
    assert [(e.actor, e.outcome) for e in refused[-2:]] == [("just-reading", "forbidden"), ("lobby-only", "forbidden")]


def test_a_lookup_that_overlaps_a_revoke_is_not_trusted(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    db = FaceDB(home=tmp_path / "home", workers=1)
    try:
        key = db.create_key("racing", "read").key or ""
        gate = db.gate
        real = gate.catalog.active_key

        def read_then_revoked(digest: str) -> Any:
            found = real(digest)  # read while the key was active...
            db.revoke_key("racing")  # ...and revoked before the lookup ends
            return found

        monkeypatch.setattr(gate.catalog, "active_key", read_then_revoked)
        assert gate.authenticate(key, "read") == ("racing", "read")  # the read it made
        assert gate.authenticate_trusted(key, "read") is None  # but it is not trusted afterwards
        monkeypatch.setattr(gate.catalog, "active_key", real)
        with pytest.raises(gatekeeper.AuthError, match="revoked"):
            gate.authenticate(key, "read")
    finally:
        db.close()
