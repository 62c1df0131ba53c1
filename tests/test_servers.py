"""The test servers of ``facedb/evaluation/servers.py`` themselves: loopback only, restartable, killable,
and gone without a trace (no process, no folder) after cleanup."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require_or_skip

from facedb.evaluation.servers import (
    ChromaServer,
    PostgresCluster,
    chroma_unavailable,
    port_open,
    postgres_unavailable,
    processes_mentioning,
)

pytestmark = pytest.mark.slow  # real PostgreSQL and Chroma servers


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a listening socket on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _, st = line.split()[1:4]
            addr, p = local.rsplit(":", 1)
            if int(p, 16) == port and st == "0A":  # TCP_LISTEN
                found.add(addr)
    return found


LOOPBACK = "0100007F"  # 127.0.0.1 in /proc/net/tcp byte order


@pytest.fixture()
def own_cluster() -> PostgresCluster:
    reason = postgres_unavailable()
    if reason:
        require_or_skip(reason)
    cluster = PostgresCluster()
    yield cluster
    cluster.cleanup()


def test_postgres_cluster_lifecycle_leaves_nothing_behind(own_cluster: PostgresCluster) -> None:
    pg = own_cluster
    pg.start()
    assert _listening(pg.port) == {LOOPBACK}
    hba = [ln.split() for ln in (pg.data / "pg_hba.conf").read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(row[0] == "local" or row[3] == "127.0.0.1/32" for row in hba), hba
    with pg.connect() as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    url = pg.create_database()
    assert url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/")
    postmaster = pg.pid
    assert postmaster and processes_mentioning(str(pg.base))

    pg.kill()
    assert not pg.running and not port_open(pg.port)
    assert not processes_mentioning(str(pg.base)), "a backend outlived the killed postmaster"
    pg.start()  # crash recovery on the same port
    assert pg.pid != postmaster
    with pg.connect() as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    pg.restart()
    with pg.connect() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    pg.drop_database(url.rsplit("/", 1)[1])

    base = pg.base
    pg.cleanup()
    assert not base.exists()
    assert not processes_mentioning(str(base))


def test_chroma_server_lifecycle_leaves_nothing_behind() -> None:
    reason = chroma_unavailable()
    if reason:
        require_or_skip(reason)
    server = ChromaServer()
    try:
        server.start()
        assert _listening(server.port) == {LOOPBACK}
        assert server.url == f"http://127.0.0.1:{server.port}"
        col = server.client().create_collection("lifecycle", embedding_function=None,
                                                configuration={"hnsw": {"space": "cosine"}})
        vecs = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
        col.add(ids=[str(i) for i in range(50)], embeddings=vecs)
        port, first = server.port, server.pid

        server.restart(graceful=False)  # SIGKILL, same path and port
        assert server.port == port and server.pid != first
        assert server.client().get_collection("lifecycle").count() == 50
        server.restart()  # SIGTERM
        assert server.client().get_collection("lifecycle").count() == 50
        assert server.stop() == 0  # a graceful stop exits 0
        assert not port_open(port) and not server.heartbeat()
    finally:
        root = server.root
        server.cleanup()
    assert not root.exists()
    assert not processes_mentioning(str(root))


def test_session_fixtures_work_together(pg_url: str, chroma_client: object, chroma_server: ChromaServer) -> None:
    assert chroma_server.heartbeat()
    assert chroma_client.heartbeat() > 0  # type: ignore[attr-defined]
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_setting('TimeZone')")).scalar() == "Europe/Paris"
            assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0
    finally:
        engine.dispose()


def test_missing_servers_skip_here_but_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh clone without the PostgreSQL binaries skips; .ci/run sets FACEDB_REQUIRE_SERVERS=1,
    which turns the same situation into a failure."""
    from facedb.evaluation import servers

    monkeypatch.setattr(servers, "find_pg_bin", lambda: None)
    monkeypatch.setattr(servers, "find_chroma", lambda: None)
    reason = servers.postgres_unavailable()
    assert reason and "postgresql-15" in reason
    assert servers.chroma_unavailable()
    monkeypatch.delenv(servers.ENV_REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_or_skip(reason)
    monkeypatch.setenv(servers.ENV_REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception):
        require_or_skip(reason)
