"""``facedb serve`` end to end: a real uvicorn process on a free loopback port, real faces.

Covers every endpoint, the auth matrix (no key, bad key, revoked key, each scope against each
endpoint), the hostile corpus uploaded over HTTP, upload limits and the bounded queue, the CLI
through the server (same JSON as direct), concurrent clients, SIGKILL during enroll requests
and SIGTERM during one.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbtools import facedb_executable, run_process
from facephotos import make_face_variants

from facedb.config import DEFAULT_PACK
from facedb.evaluation.servers import FacedbServer, bearer, clean_env, image_files

ENROLLED = ("person1", "person2", "person3", "person4")


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("people"), n_variants=3)


def _enroll_direct(home: Path, people: dict[str, list[Path]], names: tuple[str, ...]) -> None:
    for name in names:
        res = run_process(home, "enroll", name, *map(str, people[name]), "-q", env=clean_env())
        assert res.returncode == 0, res.stderr.decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> Any:
    """A server over a home with person1..person4 enrolled (3 photos each), and one key per scope."""
    home = tmp_path_factory.mktemp("served") / "home"
    _enroll_direct(home, people, ENROLLED)
    srv = FacedbServer(home).start()
    try:
        srv.keys = {scope: srv.new_key(f"{scope}-key", scope) for scope in ("read", "write", "admin")}
        yield srv
        assert srv.stop() == 0, srv.log()
    finally:
        srv.kill()


def _search(srv: FacedbServer, key: str, paths: list[Path], **fields: str) -> httpx.Response:
    return httpx.post(srv.url + "/v1/search", files=image_files(paths), data=fields, headers=bearer(key), timeout=120)


# -- the API --------------------------------------------------------------------------------

def test_healthz_and_openapi_need_no_key_and_docs_stay_offline(served: FacedbServer) -> None:
    h = httpx.get(served.url + "/healthz").json()
    assert h["status"] == "ok" and h["pack"] == DEFAULT_PACK and h["faces"] == 12
    spec = httpx.get(served.url + "/openapi.json").json()
    assert "/v1/search" in spec["paths"] and "/v1/subjects/{name}/images" in spec["paths"]
    # /docs is facedb's own page from files inside the package: nothing is fetched from outside.
    docs = httpx.get(served.url + "/docs")
    assert docs.status_code == 200 and "default-src 'self'" in docs.headers["content-security-policy"]
    assert "cdn" not in docs.text.lower() and httpx.get(served.url + "/redoc").status_code == 404
    assert httpx.get(served.url + "/v1/nowhere", headers=bearer(served.keys["read"])).status_code == 404


def test_search_names_enrolled_people_and_says_unknown_for_strangers(served: FacedbServer,
                                                                     people: dict[str, list[Path]]) -> None:
    r = _search(served, served.keys["read"], [people["person2"][0], people["person5"][0]], k="2")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["threshold"] == 0.5 and data["k"] == 2 and data["by"] == "subject"
    known, stranger = data["results"]
    assert known["image"] == people["person2"][0].name
    assert known["faces"][0]["identity"] == "person2" and known["faces"][0]["matches"][0]["match"] is True
    assert stranger["faces"][0]["identity"] is None
    assert all(not m["match"] for m in stranger["faces"][0]["matches"])
    by_face = _search(served, served.keys["read"], [people["person3"][1]], by="face", k="3", reference="true").json()
    face = by_face["results"][0]["faces"][0]
    assert [m["subject"] for m in face["matches"]] == ["person3"] * 3 and face["reference_agrees"] is True


def test_verify_subjects_show_failures_stats_models_check(served: FacedbServer, people: dict[str, list[Path]]) -> None:
    h = bearer(served.keys["read"])
    v = httpx.post(served.url + "/v1/verify", files=image_files([people["person1"][1]], "image"),
                   data={"subject": "person1"}, headers=h).json()
    assert v["match"] is True and v["subject"] == "person1" and v["faces_in_image"] == 1
    no = httpx.post(served.url + "/v1/verify", files=image_files([people["person6"][0]], "image"),
                    data={"subject": "person1"}, headers=h).json()
    assert no["match"] is False and no["distance"] > 0.5
    subjects = {s["name"]: s for s in httpx.get(served.url + "/v1/subjects", headers=h).json()}
    assert set(subjects) >= set(ENROLLED) and subjects["person1"]["faces"] == 3
    shown = httpx.get(served.url + "/v1/subjects/person1", headers=h).json()
    assert shown["name"] == "person1" and len(shown["images"]) == 3
    assert httpx.get(served.url + "/v1/subjects/nobody", headers=h).status_code == 404
    assert isinstance(httpx.get(served.url + "/v1/failures", headers=h).json(), list)
    stats = httpx.get(served.url + "/v1/stats", headers=h).json()
    assert stats["subjects"] >= 4 and stats["pack"] == DEFAULT_PACK
    assert any(m["name"] == DEFAULT_PACK and m["active"] for m in httpx.get(served.url + "/v1/packs", headers=h).json())
    check = httpx.get(served.url + "/v1/check", headers=h).json()
    assert check["clean"] is True and check["reach_checked"] == check["catalog_faces"]


def test_enroll_rename_delete_and_thumbnails(served: FacedbServer, people: dict[str, list[Path]], tmp_path: Path) -> None:
    w, r = bearer(served.keys["write"]), bearer(served.keys["read"])
    junk = tmp_path / "notes.txt"
    junk.write_text("not a picture\n")
    rep = httpx.post(served.url + "/v1/subjects/Ada Lovelace/images",
                     files=image_files([*people["person5"], junk]),
                     data={"metadata": json.dumps({"team": "blue"})}, headers=w, timeout=120)
    assert rep.status_code == 200, rep.text
    body = rep.json()
    assert body["pack"] == DEFAULT_PACK and body["enrolled"] == 3 and body["n_failed"] == 1
    (sub,) = body["subjects"]
    assert sub["subject"] == "Ada Lovelace" and sub["failed"][0]["reason"] == "not_an_image"
    assert sub["failed"][0]["path"] == "notes.txt"
    again = httpx.post(served.url + "/v1/subjects/Ada Lovelace/images", files=image_files(people["person5"][:1]),
                       headers=w).json()
    assert again["duplicates"] == 1 and again["enrolled"] == 0
    found = _search(served, served.keys["read"], [people["person5"][0]]).json()
    assert found["results"][0]["faces"][0]["identity"] == "Ada Lovelace"
    # An uploaded photo was never a file here: its thumbnail is the placeholder.
    face_id = sub["face_ids"][0]
    thumb = httpx.get(served.url + f"/v1/faces/{face_id}/thumbnail", headers=r)
    assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/svg")
    assert thumb.headers["x-facedb-placeholder"]
    # A face enrolled from a file on this machine: a real JPEG crop of it.
    p1 = httpx.get(served.url + "/v1/subjects/person1", headers=r).json()["images"][0]["faces"][0]["face_id"]
    jpeg = httpx.get(served.url + f"/v1/faces/{p1}/thumbnail?size=64", headers=r)
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    import io

    from PIL import Image
    assert max(Image.open(io.BytesIO(jpeg.content)).size) <= 64
    assert httpx.get(served.url + "/v1/faces/999999/thumbnail", headers=r).status_code == 404

    renamed = httpx.patch(served.url + "/v1/subjects/Ada Lovelace", json={"name": "Ada King"}, headers=w)
    assert renamed.json() == {"old": "Ada Lovelace", "new": "Ada King"}
    taken = httpx.patch(served.url + "/v1/subjects/Ada King", json={"name": "person1"}, headers=w)
    assert taken.status_code == 409 and taken.json()["kind"] == "already_exists"
    gone = httpx.delete(served.url + "/v1/subjects/Ada King", headers=w).json()
    assert gone == {"subject": "Ada King", "images": 3, "faces": 3}
    after = _search(served, served.keys["read"], [people["person5"][0]]).json()
    assert after["results"][0]["faces"][0]["identity"] is None
    assert httpx.delete(served.url + "/v1/subjects/Ada King", headers=w).status_code == 404


def test_admin_calls_keys_and_audit(served: FacedbServer, people: dict[str, list[Path]]) -> None:
    a = bearer(served.keys["admin"])
    assert _search(served, served.keys["read"], [people["person2"][0]]).status_code == 200
    assert httpx.post(served.url + "/v1/check/repair", headers=a).json()["clean"] is True
    vac = httpx.post(served.url + "/v1/vacuum", headers=a, timeout=120).json()
    assert vac["bytes_after"] > 0
    made = httpx.post(served.url + "/v1/keys", json={"name": "temp", "scope": "read"}, headers=a).json()
    assert made["name"] == "temp" and made["key"].startswith("fdb_")
    listed = {k["name"]: k for k in httpx.get(served.url + "/v1/keys", headers=a).json()}
    assert listed["temp"]["active"] is True and "key" not in listed["temp"]
    assert all("key_hash" not in k for k in listed.values())
    assert httpx.get(served.url + "/v1/subjects", headers=bearer(made["key"])).status_code == 200
    assert httpx.delete(served.url + "/v1/keys/temp", headers=a).json()["active"] is False
    audit = httpx.get(served.url + "/v1/audit", headers=a).json()
    actions = {(e["actor"], e["action"]) for e in audit}
    assert ("read-key", "search") in actions and ("admin-key", "vacuum") in actions
    assert ("local", "key_create") in actions
    searches = [e for e in audit if e["action"] == "search"]
    assert searches and all(e["subject"] is None for e in searches)
    # A search records counts, never who it named.
    assert not any(name in json.dumps(searches) for name in ENROLLED)


def test_reindex_reports_uploaded_photos_it_cannot_reembed(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    _enroll_direct(home, people, ("person1",))
    with FacedbServer(home, workers=1) as srv:
        admin = srv.new_key("admin", "admin")
        httpx.post(srv.url + "/v1/subjects/uploaded/images", files=image_files(people["person2"][:1]),
                   headers=bearer(admin))
        rep = httpx.post(srv.url + "/v1/reindex", headers=bearer(admin), timeout=300).json()
        assert rep["pack"] == DEFAULT_PACK and rep["reindexed"] == 3
        assert [f["reason"] for f in rep["failed"]] == ["not_on_disk"]
        assert httpx.get(srv.url + "/v1/check", headers=bearer(admin)).json()["clean"] is True


# -- keys and scopes -------------------------------------------------------------------------------

#: (method, path, scope needed, request kwargs) — harmless requests for every endpoint.
ENDPOINTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", "/v1/search", "read", {"data": {"k": "1"}}),
    ("POST", "/v1/verify", "read", {"data": {"subject": "person1"}}),
    ("GET", "/v1/subjects", "read", {}),
    ("GET", "/v1/subjects/person1", "read", {}),
    ("GET", "/v1/failures", "read", {}),
    ("GET", "/v1/stats", "read", {}),
    ("GET", "/v1/packs", "read", {}),
    ("GET", "/v1/check", "read", {}),
    ("GET", "/v1/faces/1/thumbnail", "read", {}),
    ("GET", "/v1/whoami", "read", {}),
    ("GET", "/v1/faces?subject=nobody", "read", {}),
    ("GET", "/v1/faces/999999/search", "read", {}),
    ("POST", "/v1/faces/remove", "write", {"json": {"face_ids": [999999]}}),
    ("POST", "/v1/faces/move", "write", {"json": {"face_ids": [999999], "to": "nobody"}}),
    ("POST", "/v1/merge", "write", {"json": {"source": "nobody", "target": "nobody else"}}),
    ("POST", "/v1/subjects/nobody/images", "write", {"data": {"multi_face": "largest"}}),
    ("PATCH", "/v1/subjects/nobody", "write", {"json": {"name": "still nobody"}}),
    ("DELETE", "/v1/subjects/nobody", "write", {}),
    ("POST", "/v1/check/repair", "admin", {}),
    ("POST", "/v1/vacuum", "admin", {}),
    ("GET", "/v1/keys", "admin", {}),
    ("POST", "/v1/keys", "admin", {"json": {"name": "x"}}),
    ("DELETE", "/v1/keys/nobody", "admin", {}),
    ("GET", "/v1/audit", "admin", {}),
]
RANK = {"read": 0, "write": 1, "admin": 2}


def test_auth_matrix(served: FacedbServer) -> None:
    revoked = served.new_key("revoked-admin", "admin")
    assert served.cli("keys", "revoke", "revoked-admin").returncode == 0
    callers = {"none": None, "bad": "fdb_" + "x" * 43, "revoked": revoked, **served.keys}
    seen = []
    for method, path, need, kwargs in ENDPOINTS:
        for who, key in callers.items():
            r = httpx.request(method, served.url + path, headers=bearer(key) if key else {}, timeout=120, **kwargs)
            seen.append((method, path, who, r.status_code))
            body = r.json() if r.headers["content-type"].startswith("application/json") else {}
            if key is None or who in ("bad", "revoked"):
                assert r.status_code == 401, (method, path, who, r.text)
                assert body["kind"] == "unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
            elif RANK[who] < RANK[need]:
                assert r.status_code == 403 and body["kind"] == "forbidden", (method, path, who, r.text)
            else:
                assert r.status_code not in (401, 403, 500), (method, path, who, r.text)
            assert set(body) >= {"error", "reason", "status"} if r.status_code >= 400 else True
    assert len(seen) == len(ENDPOINTS) * len(callers)


def test_a_revoked_key_fails_on_its_next_request(served: FacedbServer) -> None:
    key = served.new_key("short-lived", "read")
    assert httpx.get(served.url + "/v1/subjects", headers=bearer(key)).status_code == 200
    assert served.cli("keys", "revoke", "short-lived").returncode == 0
    r = httpx.get(served.url + "/v1/subjects", headers=bearer(key))
    assert r.status_code == 401 and "revoked" in r.json()["error"]


def test_keys_are_stored_only_as_hashes(served: FacedbServer) -> None:
    key = served.new_key("hashed", "read")
    for path in served.home.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert key.encode() not in path.read_bytes(), f"the API key itself is stored in {path}"


# -- bad input and overload ---------------------------------------------------------------------------

def test_hostile_corpus_uploaded_gets_reasons_never_a_500(served: FacedbServer, hostile_corpus: Any) -> None:
    key = served.keys["read"]
    checked = 0
    for case, (path, expected) in hostile_corpus.items():
        if path.is_symlink() or not path.is_file() or not os.access(path, os.R_OK):
            continue  # filesystem cases (loops, FIFOs...): there are no bytes to upload
        r = httpx.post(served.url + "/v1/search", files=[("images", (path.name, path.read_bytes()))],
                       headers=bearer(key), timeout=300)
        assert r.status_code == 200, (case, r.status_code, r.text[:300])
        res = r.json()["results"][0]
        if expected is None:
            assert res["faces"], f"{case}: a face should be found ({res})"
        else:
            assert res["reason"] == expected, (case, res)
            assert "\n" not in res["error"]
        checked += 1
    assert checked >= 20
    assert httpx.get(served.url + "/healthz").json()["status"] == "ok"


def test_malformed_requests_get_json_4xx(served: FacedbServer) -> None:
    h = bearer(served.keys["write"])
    cases = [
        httpx.post(served.url + "/v1/search", content=b"hello", headers={**h, "Content-Type": "text/plain"}),
        httpx.post(served.url + "/v1/search", content=b"--x\r\nbroken", headers={
            **h, "Content-Type": "multipart/form-data; boundary=x"}),
        httpx.post(served.url + "/v1/search", files=image_files([]), data={"k": "many"}, headers=h),
        httpx.post(served.url + "/v1/search", data={"k": "0"}, files=[("images", ("a.jpg", b"x"))], headers=h),
        httpx.patch(served.url + "/v1/subjects/person1", content=b"{not json", headers=h),
        httpx.post(served.url + "/v1/subjects/%20bad/images", files=[("images", ("a.jpg", b"x"))], headers=h),
        httpx.get(served.url + "/v1/audit?since=yesterday", headers=bearer(served.keys["admin"])),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        assert set(r.json()) >= {"error", "reason", "status"}


def test_upload_limits_answer_413(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    with FacedbServer(home, "--max-file-mb", "0.05", "--max-request-mb", "0.2", workers=1) as srv:
        key = srv.new_key("k", "read")
        small = people["person1"][0]
        assert small.stat().st_size < 50_000, "the crop should be under the per-file limit"
        ok = httpx.post(srv.url + "/v1/search", files=image_files([small]), headers=bearer(key))
        assert ok.status_code == 200
        big = httpx.post(srv.url + "/v1/search", files=[("images", ("big.jpg", os.urandom(80_000)))],
                         headers=bearer(key))
        assert big.status_code == 413 and big.json()["kind"] == "too_large" and "per file" in big.json()["error"]
        many = httpx.post(srv.url + "/v1/search", files=[("images", (f"{i}.jpg", os.urandom(40_000)))
                                                          for i in range(10)], headers=bearer(key))
        assert many.status_code == 413 and "per request" in many.json()["error"]
        # The CLI splits what the server refuses and fails only the file that is too large alone.
        (tmp_path / "big.jpg").write_bytes(os.urandom(80_000))
        res = srv.cli("--server", srv.url, "--api-key", key, "search", str(small), str(tmp_path / "big.jpg"), "--json")
        assert res.returncode == 3, res.stderr.decode()
        out = json.loads(res.stdout)["results"]
        assert out[0]["faces"] and out[1]["reason"] == "too_large"
        # The owner's socket has the direct path's limits: the same file is read (and is no image).
        res = srv.cli("search", str(small), str(tmp_path / "big.jpg"), "--json")
        out = json.loads(res.stdout)["results"]
        assert out[0]["faces"] and out[1]["reason"] == "not_an_image", out
        assert httpx.get(srv.url + "/healthz").status_code == 200


def test_a_full_queue_answers_503_with_retry_after(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    with FacedbServer(home, "--queue", "1", workers=1) as srv:
        key = srv.new_key("k", "read")
        # A request whose body is still arriving holds the one place in the queue.
        slow = socket.create_connection(("127.0.0.1", srv.port))
        try:
            slow.sendall((f"POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                          "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n")
                         .encode())
            deadline = time.monotonic() + 10
            while True:
                r = httpx.post(srv.url + "/v1/search", files=image_files(people["person1"][:1]), headers=bearer(key))
                if r.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["kind"] == "overloaded"
            # Light calls are not queued behind it.
            assert httpx.get(srv.url + "/v1/subjects", headers=bearer(key)).status_code == 200
        finally:
            slow.close()
        deadline = time.monotonic() + 10
        while httpx.post(srv.url + "/v1/search", files=image_files(people["person1"][:1]),
                         headers=bearer(key)).status_code != 200:
            assert time.monotonic() < deadline, "the queue place was not given back"
            time.sleep(0.2)


def test_eight_concurrent_clients_times_25_searches(served: FacedbServer, people: dict[str, list[Path]]) -> None:
    key = served.keys["read"]
    probes = [(name, people[name][i % 3]) for i, name in enumerate(ENROLLED * 2)]

    def client(j: int) -> list[bool]:
        name, photo = probes[j]
        ok = []
        with httpx.Client(base_url=served.url, headers=bearer(key), timeout=120) as c:
            for _ in range(25):
                r = c.post("/v1/search", files=image_files([photo]))
                ok.append(r.status_code == 200 and r.json()["results"][0]["faces"][0]["identity"] == name)
        return ok

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    assert [all(r) for r in results] == [True] * 8 and sum(map(len, results)) == 200


# -- the CLI through the server --------------------------------------------------------------------

def _without(d: Any, *keys: str) -> Any:
    if isinstance(d, dict):
        return {k: _without(v, *keys) for k, v in d.items() if k not in keys}
    if isinstance(d, list):
        return [_without(v, *keys) for v in d]
    return d


def test_cli_through_the_server_gives_the_same_json_as_direct(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    direct, served_home = tmp_path / "direct", tmp_path / "served"
    junk = tmp_path / "junk.txt"
    junk.write_text("no picture here\n")
    group = Path(__file__).resolve().parent / "missing-photo.jpg"
    env = clean_env()

    def run(home: Path, *args: str) -> tuple[int, Any]:
        res = subprocess.run([*facedb_executable(), "--home", str(home), *args, "--json"], capture_output=True,
                             env=env, timeout=300)
        return res.returncode, json.loads(res.stdout)

    with FacedbServer(served_home, workers=1) as srv:
        assert srv.cli("stats").returncode == 0  # through the socket
        steps = [
            ("enroll", "person1", *map(str, people["person1"]), str(junk)),
            ("enroll", "person2", *map(str, people["person2"])),
            ("search", str(people["person1"][0]), str(people["person6"][0]), str(group), "-k", "2"),
            ("search", str(people["person2"][1]), "--by", "face", "-k", "3", "--reference"),
            ("subjects",),
            ("show", "person2"),
            ("failures",),
            ("delete", "person1", "--yes"),
            ("search", str(people["person1"][0])),
            ("show", "person1"),
        ]
        for step in steps:
            d_code, d_out = run(direct, *step)
            s_code, s_out = run(served_home, *step)
            assert s_code == d_code, (step, d_code, s_code, s_out)
            assert _without(s_out, "created_at") == _without(d_out, "created_at"), step
        audit = srv.cli_json("audit")
        assert [e["action"] for e in audit if e["action"] in ("enroll", "delete")] == ["enroll", "enroll", "delete"]
        assert all(e["actor"] == "local" for e in audit)


def test_the_client_path_imports_nothing_heavy(served: FacedbServer, people: dict[str, list[Path]]) -> None:
    code = ("import sys\n"
            "from facedb.cli import cli\n"
            "try:\n"
            f"    cli.main(['--home', {str(served.home)!r}, 'search', {str(people['person1'][0])!r}, '--json'],"
            " prog_name='facedb')\n"
            "except SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "heavy = [m for m in ('numpy', 'cv2', 'chromadb', 'sqlalchemy', 'PIL', 'onnxruntime', 'pydantic',\n"
            "                     'fastapi') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, env=served.env, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.decode()
    assert '"identity": "person1"' in out and "HEAVY []" in out, out


def test_the_socket_is_private_and_tcp_needs_a_key(served: FacedbServer) -> None:
    sock = served.home / "facedb.sock"
    mode = sock.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(served.home.stat().st_mode) == 0o700
    assert served.cli("subjects").returncode == 0
    assert httpx.get(served.url + "/v1/subjects").status_code == 401


def test_a_second_server_on_the_same_home_is_refused(served: FacedbServer) -> None:
    res = subprocess.run([*facedb_executable(), "--home", str(served.home), "serve", "--port", "0"],
                         capture_output=True, env=served.env, timeout=120)
    assert res.returncode == 5 and b"already serves this home" in res.stderr


def test_remote_cli_with_a_key(served: FacedbServer, people: dict[str, list[Path]], tmp_path: Path) -> None:
    env = clean_env(FACEDB_SERVER=served.url, FACEDB_API_KEY=served.keys["read"])
    res = subprocess.run([*facedb_executable(), "--home", str(tmp_path / "unused"), "search",
                          str(people["person3"][0]), "--json"], capture_output=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout)["results"][0]["faces"][0]["identity"] == "person3"
    assert not (tmp_path / "unused").exists(), "a remote command must not create a local home"
    denied = subprocess.run([*facedb_executable(), "delete", "person3", "--yes"], capture_output=True, env=env,
                            timeout=120)
    assert denied.returncode == 9 and b"needs 'write'" in denied.stderr
    env["FACEDB_SERVER"] = "http://127.0.0.1:1"
    down = subprocess.run([*facedb_executable(), "subjects"], capture_output=True, env=env, timeout=120)
    assert down.returncode == 8 and b"cannot reach the facedb server" in down.stderr


# -- crashes and shutdown ---------------------------------------------------------------------------

def test_sigkill_during_enroll_requests_then_restart(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    variants = make_face_variants(tmp_path / "more", n_variants=6)
    photos = [(name, p) for name in sorted(variants) for p in variants[name]]
    acknowledged: dict[int, str] = {}
    srv = FacedbServer(home, workers=1).start()
    try:
        key = srv.new_key("w", "write")
        stop = threading.Event()

        def enroller(part: list[tuple[str, Path]]) -> None:
            with httpx.Client(base_url=srv.url, headers=bearer(key), timeout=60) as c:
                for name, p in part:
                    if stop.is_set():
                        return
                    try:
                        r = c.post(f"/v1/subjects/{name}/images", files=image_files([p]))
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        for fid in r.json()["subjects"][0]["face_ids"]:
                            acknowledged[fid] = name

        threads = [threading.Thread(target=enroller, args=(photos[i::3],)) for i in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.kill()
        stop.set()
        for t in threads:
            t.join(60)
        assert acknowledged, "no enroll request finished before the kill"
    finally:
        srv.kill()
    with FacedbServer(home, workers=1) as again:
        report = again.cli_json("check")
        assert report["clean"] is True, report
        stored: dict[int, str] = {}
        for s in again.cli_json("subjects"):
            for img in again.cli_json("show", s["name"])["images"]:
                for f in img["faces"]:
                    stored[f["face_id"]] = s["name"]
        lost = {fid: name for fid, name in acknowledged.items() if stored.get(fid) != name}
        assert not lost, f"acknowledged faces lost by the kill: {lost}"


def test_sigterm_lets_an_inflight_enroll_finish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    variants = make_face_variants(tmp_path / "faces", n_variants=6)
    photos = [p for name in sorted(variants) for p in variants[name]]
    srv = FacedbServer(home, workers=1).start()
    try:
        key = srv.new_key("w", "write")
        result: dict[str, Any] = {}

        def enroll() -> None:
            r = httpx.post(srv.url + "/v1/subjects/everyone/images", files=image_files(photos),
                           data={"multi_face": "largest"}, headers=bearer(key), timeout=300)
            result["status"], result["body"] = r.status_code, r.json()

        t = threading.Thread(target=enroll)
        t.start()
        time.sleep(1.0)  # the request is in (36 photos take several seconds to analyse)
        assert srv.proc is not None
        srv.proc.terminate()
        t.join(300)
        assert srv.proc.wait(120) == 0, srv.log()
    finally:
        srv.kill()
    assert result["status"] == 200, result
    assert result["body"]["enrolled"] + result["body"]["duplicates"] == len(photos)
    res = run_process(home, "subjects", "--json", env=clean_env())
    (everyone,) = json.loads(res.stdout)
    assert everyone["faces"] == result["body"]["enrolled"]


def test_a_command_waiting_for_the_home_hands_over_to_a_server_that_takes_it(
        tmp_path: Path, people: dict[str, list[Path]]) -> None:
    """A CLI command blocked on the home lock notices the server that appears meanwhile (its
    socket) and sends its request there instead of timing out with "database busy"."""
    home = tmp_path / "home"
    _enroll_direct(home, people, ("person1",))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom facedb import FaceDB\ndb = FaceDB(sys.argv[1])\n"
        "with db.hold():\n    print('held', flush=True)\n    sys.stdin.readline()\n"), str(home)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env())
    srv = FacedbServer(home, workers=1)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        search = subprocess.Popen([*facedb_executable(), "--home", str(home), "search", str(people["person1"][0]),
                                   "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
        time.sleep(2.0)  # the command is waiting for the lock
        assert search.poll() is None
        log = open(srv.log_path, "ab")
        srv.proc = subprocess.Popen([*facedb_executable(), "--home", str(home), "serve", *srv.args],
                                    stdout=log, stderr=log, env=srv.env)
        log.close()
        deadline = time.monotonic() + 60
        while not (home / "facedb.sock").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)  # the waiting command sees the socket and hands over
        holder.communicate(b"\n", timeout=30)  # now the server gets the home
        out, err = search.communicate(timeout=180)
        assert search.returncode == 0, err.decode()
        assert json.loads(out)["results"][0]["faces"][0]["identity"] == "person1"
        assert "POST /v1/search 200" in srv.log(), "the command did not go through the server"
    finally:
        holder.kill()
        srv.kill()
