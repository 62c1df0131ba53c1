"""What the server's CPU cuts must keep: the request log line, the contract check, the audit trail
under concurrent searches, and the load generator's own HTTP reader.

- The request log is a plain ASGI middleware now (no ``BaseHTTPMiddleware``): one line per
  request with the route *template*, the status and the time, for answers and errors alike.
- The reads every search makes (key lookup, pack contract, template changes, subject faces) run
  prebuilt statements on a plain connection: ``pack_state`` answers what ``pack_record`` and
  ``flag`` answer, and the contract still refuses other weights and an unfinished reindex.
- A real ``facedb serve`` under the load generator (4 threads, one kept-alive socket each):
  every search answered, and the audit trail holds one complete row per search, in time order.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbtools import run_process
from facephotos import make_face_variants
from fastapi.testclient import TestClient
from starlette.middleware.base import BaseHTTPMiddleware

from facedb.api import FaceDB
from facedb.catalog.core import REINDEXING
from facedb.errors import AuthError, IndexCorruptError, ModelError
from facedb.evaluation import loadgen
from facedb.evaluation.servers import FacedbServer, bearer, clean_env
from facedb.server.app import create_app
from facedb.server.requestlog import RequestLog


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("people"), n_variants=2)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> Iterator[FaceDB]:
    d = FaceDB(home=tmp_path_factory.mktemp("cpu") / "home", workers=1)
    try:
        d.enroll("person1", people["person1"])
        d.enroll("person2", people["person2"])
        yield d
    finally:
        d.close()


# -- the request log ------------------------------------------------------------------------------

def test_request_log_names_route_templates_statuses_and_times(db: FaceDB, people: dict[str, list[Path]],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(db)
    assert any(mw.cls is RequestLog for mw in app.user_middleware)
    assert not any(mw.cls is BaseHTTPMiddleware for mw in app.user_middleware)
    key = db.create_key("log-reader", "read").key or ""
    caplog.set_level(logging.INFO, logger="facedb.server")
    with TestClient(app) as client:
        files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in people["person1"][:1]]
        ok = client.post("/v1/search", files=files, headers=bearer(key))
        assert ok.status_code == 200 and ok.json()["results"][0]["faces"][0]["identity"] == "person1"
        assert client.get("/v1/subjects/person2", headers=bearer(key)).status_code == 200
        assert client.get("/v1/subjects/person1", headers=bearer("fdb_wrong")).status_code == 401
        assert client.get("/v1/nowhere").status_code == 404
        assert client.get("/healthz").status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "facedb.server"]
    expected = ["POST /v1/search 200", "GET /v1/subjects/{name:path} 200", "GET /v1/subjects/{name:path} 401",
                "GET (unmatched) 404", "GET /healthz 200"]
    assert [" ".join(line.split()[:3]) for line in lines] == expected, lines
    assert all(line.endswith(" ms") and line.split()[-2].isdigit() for line in lines)
    # Never a subject's name: the log shows route templates only.
    assert not any("person" in line for line in lines)


# -- the search reads --------------------------------------------------------------------------

def test_pack_state_answers_what_pack_record_and_flag_answer(db: FaceDB) -> None:
    catalog = db.store.catalog
    name = db.pack.info.name
    assert catalog.pack_state(name) == (catalog.pack_record(name), False)
    assert catalog.pack_state(name)[0] is not None
    assert catalog.pack_state("no-such-pack") == (None, False)
    try:
        catalog.set_flag(REINDEXING, name, True)
        assert catalog.pack_state(name) == (catalog.pack_record(name), True) and catalog.flag(REINDEXING, name)
        with pytest.raises(IndexCorruptError, match="reindex"):
            db.pack.contract()
    finally:
        catalog.set_flag(REINDEXING, name, False)
    assert db.pack.contract() == db.pack.info
    real = catalog.pack_record(name)
    assert real is not None
    try:
        catalog.record_pack(dataclasses.replace(real, fingerprint="0" * 64))
        with pytest.raises(ModelError, match="other model weights"):
            db.pack.contract()
    finally:
        catalog.record_pack(real)
    assert db.pack.contract() == db.pack.info


def test_key_lookup_and_template_reads_see_every_change(db: FaceDB, people: dict[str, list[Path]]) -> None:
    """The prebuilt statements are bound per call: a revoked key fails at once, a new subject
    and a deleted one are seen by the very next search."""
    created = db.create_key("short-lived", "read")
    gate, catalog = db.gate, db.store.catalog
    assert gate.authenticate(created.key, "read") == ("short-lived", "read")
    db.revoke_key("short-lived")
    assert catalog.active_key("x" * 64) is None
    with pytest.raises(AuthError, match="unknown or revoked"):
        gate.authenticate(created.key, "read")
    probe = people["person3"][1]
    before = db.search([probe], k=1).results[0].faces[0]
    assert before.identity != "person3"
    db.enroll("person3", people["person3"][:1])
    assert db.search([probe], k=1).results[0].faces[0].identity == "person3"
    db.delete("person3")
    assert db.search([probe], k=1).results[0].faces[0].identity != "person3"


# -- a real server under the load generator ------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> Iterator[FacedbServer]:
    home = tmp_path_factory.mktemp("served-cpu") / "home"
    for name in ("person1", "person2", "person3"):
        res = run_process(home, "enroll", name, *map(str, people[name]), "-q", env=clean_env())
        assert res.returncode == 0, res.stderr.decode()
    srv = FacedbServer(home).start()
    try:
        yield srv
        assert srv.stop() == 0, srv.log()
    finally:
        srv.kill()


def _loadgen(srv: FacedbServer, key: str, listing: Path, *args: str) -> tuple[int, dict[str, Any]]:
    res = subprocess.run([sys.executable, "-m", "facedb.evaluation.loadgen", "search", "--port", str(srv.port),
                          "--images", str(listing), *args], capture_output=True, timeout=600,
                         env=clean_env(FACEDB_API_KEY=key))
    return res.returncode, json.loads(res.stdout)


def test_concurrent_searches_are_answered_and_audited_completely_in_time_order(
        server: FacedbServer, people: dict[str, list[Path]], tmp_path: Path) -> None:
    key = server.new_key("cpu-load", "read")
    listing = tmp_path / "probes.txt"
    listing.write_text("".join(f"{people[p][1]}\n" for p in ("person1", "person2", "person3", "person5")))
    code, out = _loadgen(server, key, listing, "--clients", "4", "--requests", "24", "--warmup", "1")
    assert code == 0 and out["statuses"] == {"200": 24} and out["images_ok"] == 24, out
    # The same answer as a plain client gets, byte for byte apart from nothing: same JSON.
    one = httpx.post(server.url + "/v1/search", files=[("images", (people["person2"][1].name,
                                                                   people["person2"][1].read_bytes()))],
                     data={"k": "3"}, headers=bearer(key), timeout=120)
    assert one.status_code == 200 and one.json()["results"][0]["faces"][0]["identity"] == "person2"
    admin = server.new_key("cpu-admin", "admin")
    trail = httpx.get(server.url + "/v1/audit", headers=bearer(admin), timeout=60).json()
    mine = [e for e in trail if e["actor"] == "cpu-load"]
    # 4 warm-up searches + 24 timed ones + the plain one: every row complete.
    assert len(mine) == 29 and {e["action"] for e in mine} == {"search"}
    assert all(e["outcome"] == "ok" and e["images"] == 1 and e["faces"] == 1 and e["collection"] == "default"
               and e["subject"] is None for e in mine), mine
    # person5 is not enrolled: one probe in four names nobody (the requests cycle through the list).
    named = [e["detail"] for e in mine]
    assert named.count("named 0 of 1 face") == 7 and named.count("named 1 of 1 face") == 22, named
    assert [e["at"] for e in trail] == sorted(e["at"] for e in trail)


def test_load_generator_reports_refusals_and_reads_every_answer(server: FacedbServer, people: dict[str, list[Path]],
                                                                 tmp_path: Path) -> None:
    listing = tmp_path / "probes.txt"
    listing.write_text(f"{people['person1'][0]}\n")
    code, out = _loadgen(server, "fdb_not-a-key", listing, "--clients", "2", "--requests", "6")
    assert code == 1 and out["statuses"] == {"401": 6} and out["images_ok"] == 0
    assert out["errors"] and all(e.startswith("HTTP 401: ") and "unknown or revoked" in e for e in out["errors"])


def test_load_generator_reads_lengths_chunks_and_closes() -> None:
    """The minimal HTTP/1.1 reader: a Content-Length body, a chunked one, one that runs to the close."""
    import socket
    import threading

    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
               b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
               b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy"]
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            for answer in answers:
                data = b""
                while not data.endswith(b"body"):
                    data += conn.recv(4096)
                seen.append(data)
                conn.sendall(answer)
                if b"close" in answer:
                    conn.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    conn = loadgen.Connection("127.0.0.1", port, timeout=10)
    raw = loadgen.encode_request("/v1/search", b"body", "text/plain", "127.0.0.1", port, {"Authorization": "Bearer k"})
    assert conn.exchange(raw) == (200, b"hello")
    assert conn.exchange(raw) == (201, b"abcde")
    assert conn.exchange(raw) == (503, b"busy") and conn.sock is None
    t.join(10)
    srv.close()
    assert seen[0].startswith(b"POST /v1/search HTTP/1.1\r\n") and b"\r\nContent-Length: 4\r\n" in seen[0]
    assert b"\r\nAuthorization: Bearer k\r\n" in seen[0] and seen[0].endswith(b"\r\n\r\nbody")
