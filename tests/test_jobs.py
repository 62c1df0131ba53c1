"""Background jobs over HTTP (``/v1/jobs``): progress, the result given once, cancellation,
owners, collections, bounds. In process, with FastAPI's TestClient and real faces."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from facephotos import make_face_variants
from fastapi.testclient import TestClient

from facedb.api import FaceDB
from facedb.evaluation.clips import Scene, slideshow
from facedb.server.app import ServerConfig, create_app


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("jobs")
    people = make_face_variants(root / "people", n_variants=2)
    db = FaceDB(home=root / "home", workers=1)
    try:
        db.enroll("person1", people["person1"])
        db.create_collection("lobby")
        keys = {name: db.create_key(name, "read").key or "" for name in ("alice", "bob")}
        keys["lobby-only"] = db.create_key("lobby-only", "read", collection="lobby").key or ""
        clip = root / "clip.mp4"
        slideshow(clip, [Scene(people["person1"][0], 2.0), Scene(people["person2"][0], 2.0)])
        yield {"db": db, "people": people, "keys": keys, "clip": clip}
    finally:
        db.close()


def _h(setup: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {setup['keys'][who]}"}


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def _wait(c: TestClient, url: str, headers: dict[str, str], until: tuple[str, ...] = ("done", "failed")) -> Any:
    for _ in range(1200):
        body = c.get(url, headers=headers).json()
        if body.get("status") in until:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job never reached {until}: {body}")


def test_a_job_answers_what_the_call_would_once_and_only_to_its_owner(setup: dict[str, Any]) -> None:
    db, people = setup["db"], setup["people"]
    probes = [people["person1"][1], setup["clip"], people["person2"][1]]
    direct = db.search(probes).to_dict()
    with TestClient(create_app(db)) as c:
        res = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files(probes), data={"kind": "search"})
        assert res.status_code == 202, res.text
        job = res.json()
        assert job["status"] in ("queued", "running") and job["total"] == 3 and job["result"] is None
        url = f"/v1/jobs/{job['id']}"
        # another key neither sees it nor learns it exists, nor may a key of another collection
        assert c.get(url, headers=_h(setup, "bob")).status_code == 404
        assert c.delete(url, headers=_h(setup, "bob")).status_code == 404
        assert c.get(f"/v1/collections/lobby/jobs/{job['id']}", headers=_h(setup, "alice")).status_code == 404
        done = _wait(c, url, _h(setup, "alice"))
        assert done["status"] == "done" and done["done"] == 3 and done["finished_at"]
        result = done["result"]
        assert [r["image"] for r in result["results"]] == [p.name for p in probes]
        for got, want in zip(result["results"], direct["results"]):
            assert {k: v for k, v in got.items() if k != "image"} == {k: v for k, v in want.items() if k != "image"}
        # fetched once: forgotten
        gone = c.get(url, headers=_h(setup, "alice"))
        assert gone.status_code == 404 and "kept until it is fetched once" in gone.json()["error"]
    assert [e.action for e in db.audit(limit=2) if e.actor == "alice"][-1:] == ["search"]


def test_a_job_can_be_cancelled_while_it_runs(setup: dict[str, Any]) -> None:
    many = [setup["people"]["person1"][0]] * 400
    with TestClient(create_app(setup["db"])) as c:
        job = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files(many)).json()
        url = f"/v1/jobs/{job['id']}"
        running = _wait(c, url, _h(setup, "alice"), until=("running",))
        assert running["done"] < 400
        cancelled = c.delete(url, headers=_h(setup, "alice")).json()
        assert cancelled["status"] == "cancelled" and cancelled["result"] is None
        assert c.get(url, headers=_h(setup, "alice")).status_code == 404
        # the worker stops at its next photo: a new job runs soon after
        t0 = time.monotonic()
        nxt = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files(many[:1])).json()
        assert _wait(c, f"/v1/jobs/{nxt['id']}", _h(setup, "alice"))["status"] == "done"
        assert time.monotonic() - t0 < 60


def test_jobs_are_bounded_and_results_expire(setup: dict[str, Any]) -> None:
    config = ServerConfig(max_jobs=1, job_keep_s=0.5)
    photo = setup["people"]["person1"][0]
    with TestClient(create_app(setup["db"], config)) as c:
        first = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files([photo] * 200)).json()
        full = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files([photo]))
        assert full.status_code == 503 and full.json()["kind"] == "overloaded" and full.headers["Retry-After"]
        c.delete(f"/v1/jobs/{first['id']}", headers=_h(setup, "alice"))
        job = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files([photo])).json()
        for _ in range(1200):  # wait for it to end without fetching it
            if c.app.state.jobs._jobs[job["id"]].finished:
                break
            time.sleep(0.05)
        time.sleep(0.6)
        assert c.get(f"/v1/jobs/{job['id']}", headers=_h(setup, "alice")).status_code == 404  # expired unfetched


def test_bad_job_requests_are_422_and_a_job_stays_in_its_collection(setup: dict[str, Any]) -> None:
    photo = setup["people"]["person1"][0]
    with TestClient(create_app(setup["db"])) as c:
        bad = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files([photo]), data={"kind": "cook"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "kind"
        assert c.post("/v1/jobs", headers=_h(setup, "alice"), data={"kind": "search"}).status_code == 422
        assert c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files([photo]),
                      data={"sample_fps": "99"}).status_code == 422
        # a key limited to lobby submits there, where nobody is enrolled: a done job, nobody named
        lobby = c.post("/v1/collections/lobby/jobs", headers=_h(setup, "lobby-only"), files=_files([photo])).json()
        done = _wait(c, f"/v1/collections/lobby/jobs/{lobby['id']}", _h(setup, "lobby-only"))
        assert done["collection"] == "lobby" and done["result"]["results"][0]["faces"][0]["identity"] is None
        assert c.post("/v1/jobs", headers=_h(setup, "lobby-only"), files=_files([photo])).status_code == 403


def test_a_discover_job(setup: dict[str, Any]) -> None:
    """``kind=discover``: the result is what ``POST /v1/discover`` answers."""
    people = setup["people"]
    probes = [people["person1"][1], people["person2"][0], people["person2"][1]]
    direct = setup["db"].discover(probes).to_dict()
    with TestClient(create_app(setup["db"])) as c:
        job = c.post("/v1/jobs", headers=_h(setup, "alice"), files=_files(probes),
                     data={"kind": "discover", "cluster_threshold": "0.5"}).json()
        done = _wait(c, f"/v1/jobs/{job['id']}", _h(setup, "alice"))
        assert done["status"] == "done" and done["kind"] == "discover" and done["done"] == 3
        got = done["result"]
        assert [(x["subject"], x["size"]) for x in got["clusters"]] == [(x["subject"], x["size"])
                                                                       for x in direct["clusters"]]
        assert [(x["subject"], x["size"]) for x in got["clusters"]] == [("person1", 1), (None, 2)]
