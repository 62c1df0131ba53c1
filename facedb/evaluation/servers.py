"""Real servers to measure and test facedb against: a throw-away PostgreSQL cluster, a
``chroma run`` server and ``facedb serve``, each a child process.

The one home of these helpers: the tests (``tests/conftest.py`` wraps them in fixtures) and the
benchmarks (``scripts/bench``) import them from here, so the servers a benchmark measures are the
ones the tests check. They are installed with facedb but facedb itself never imports them, and
they import nothing heavier than the standard library at module level (psycopg and chromadb only
inside the methods that need them).

All three listen on 127.0.0.1 only, on a free port, with their files in a private temporary
folder (0700), and are stopped by their owner (the fixtures: also when a test fails) and, as a
last resort, at interpreter exit.

PostgreSQL comes from the server binaries of the machine (Debian's ``postgresql-15``:
``/usr/lib/postgresql/15/bin``; override with ``FACEDB_PG_BIN``). ``initdb`` refuses to run as
root, so as root the cluster is created and run by the ``postgres`` OS user, in a folder that
user owns. Where the binaries (or psycopg, or the ``chroma`` executable) are missing,
``postgres_unavailable()`` / ``chroma_unavailable()`` say why; the test fixtures then skip with
that reason, unless ``FACEDB_REQUIRE_SERVERS=1`` (set by ``.ci/run``) turns it into a failure,
so CI can never skip them silently.

The cluster is deliberately not the friendliest possible one: its default collation is ICU
``en-US`` (linguistic order, as on a typical production server, not byte order) and its
``TimeZone`` is ``Europe/Paris``, so code that only works with C collation or a UTC server shows
up here. Durability settings are relaxed for speed (``fsync=off``): that survives the process
kills the outage tests do (the kernel keeps the written pages), not a power cut.
"""
from __future__ import annotations

import atexit
import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ENV_PG_BIN = "FACEDB_PG_BIN"
ENV_REQUIRE = "FACEDB_REQUIRE_SERVERS"
DEBIAN_PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SUPERUSER = "postgres"
HOST = "127.0.0.1"

# -- bookkeeping: everything started here is stopped at exit -------------------------------------

_live: list[Any] = []
_live_lock = threading.Lock()


def _register(server: Any) -> None:
    with _live_lock:
        if server not in _live:
            _live.append(server)


def _unregister(server: Any) -> None:
    with _live_lock:
        if server in _live:
            _live.remove(server)


@atexit.register
def _stop_everything() -> None:  # pragma: no cover - only reached when a fixture did not run
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.cleanup()


def _sigterm_to_keyboard_interrupt() -> None:
    """Make SIGTERM unwind like Ctrl-C, so fixture finalizers stop the servers (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        owner = os.getpid()

        def _handler(signum: int, frame: Any) -> None:
            if os.getpid() != owner:  # a forked child inherited this: die as SIGTERM would
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _handler)


# -- small helpers -------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    if not _exists(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _exists(pid: int) -> bool:
    """True while ``pid`` exists at all, zombies included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc; empty elsewhere)."""
    out = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if text in cmd and pid_alive(int(entry)):
            found.append((int(entry), cmd))
    return found


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if pid_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if pid_alive(p)]
    return left


def _reachable_by_others(path: Path) -> bool:
    """Every ancestor of ``path`` lets other users traverse it (o+x)."""
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# -- PostgreSQL ----------------------------------------------------------------------------------

def find_pg_bin() -> Path | None:
    """The folder with initdb/pg_ctl/postgres: ``$FACEDB_PG_BIN``, Debian's PG 15, or ``$PATH``."""
    candidates = []
    if os.environ.get(ENV_PG_BIN):
        candidates.append(Path(os.environ[ENV_PG_BIN]))
    candidates.append(DEBIAN_PG_BIN)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for c in candidates:
        if all((c / exe).is_file() and os.access(c / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return c
    return None


def postgres_unavailable() -> str | None:
    """Why a PostgreSQL cluster cannot be started here, or None when it can."""
    if find_pg_bin() is None:
        return (f"PostgreSQL server binaries not found (looked in ${ENV_PG_BIN}, {DEBIAN_PG_BIN}, $PATH); "
                "install Debian's postgresql-15 to run the PostgreSQL tests")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (3) is not installed: pip install 'psycopg[binary]>=3.1'"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(PG_SUPERUSER)
        except KeyError:
            return f"running as root and there is no {PG_SUPERUSER!r} OS user to run initdb as"
    return None


class PostgresCluster:
    """A private PostgreSQL cluster: ``initdb`` once, then ``pg_ctl`` start/stop/restart, kill.

    >>> pg = PostgresCluster(); pg.start()                    # doctest: +SKIP
    >>> url = pg.create_database()                            # postgresql+psycopg://...
    >>> pg.kill(); pg.start(); pg.cleanup()                   # doctest: +SKIP
    """

    _names = itertools.count(1)

    def __init__(self, bin_dir: Path | None = None, *, port: int | None = None,
                 icu_locale: str | None = "en-US", timezone: str = "Europe/Paris",
                 parent: Path | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise RuntimeError(postgres_unavailable() or "PostgreSQL binaries not found")
        self.bin = Path(found)
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.icu_locale = icu_locale
        self.timezone = timezone
        self.as_root = os.geteuid() == 0
        self.base = self._make_base(parent)
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self._initialised = False
        self._databases: set[str] = set()
        _register(self)

    # -- files and processes ---------------------------------------------------------------------
    def _make_base(self, parent: Path | None) -> Path:
        """A folder the server's OS user owns (as root: chowned to ``postgres``), mode 0700."""
        if parent is None:
            parent = Path(tempfile.gettempdir())
            if self.as_root and not _reachable_by_others(parent):
                parent = Path("/tmp")
        base = Path(tempfile.mkdtemp(prefix="facedb-pg-", dir=parent))
        if self.as_root:
            if not _reachable_by_others(parent):
                shutil.rmtree(base, ignore_errors=True)
                raise RuntimeError(f"{parent} is not reachable by the {PG_SUPERUSER} user: pass parent=")
            import pwd

            pw = pwd.getpwnam(PG_SUPERUSER)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o700)
        return base

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary as the cluster's OS user (``postgres`` when we are root)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        kwargs: dict[str, Any] = {}
        if self.as_root:
            import pwd

            pw = pwd.getpwnam(PG_SUPERUSER)
            kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
            env["HOME"] = str(self.base)
        proc = subprocess.run([str(self.bin / args[0]), *args[1:]], cwd=self.base, env=env, capture_output=True,
                              text=True, timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n"
                               f"server log:\n{_tail(self.log)}")
        return proc

    def _initdb(self) -> None:
        args = ["initdb", "-D", str(self.data), "-U", PG_SUPERUSER, "-A", "trust", "-E", "UTF8",
                "--locale=C", "--no-sync", "--no-instructions"]
        if self.icu_locale:
            args += ["--locale-provider=icu", f"--icu-locale={self.icu_locale}"]
        self._run(*args)
        # Trust, and only on the private socket folder and loopback.
        (self.data / "pg_hba.conf").write_text(
            "# facedb test cluster: loopback and the private socket folder only\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(
                "\n# facedb test cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                f"timezone = '{self.timezone}'\n"
                "fsync = off\n"
                "full_page_writes = off\n"
                "max_connections = 100\n"
                "shared_buffers = 32MB\n"
                "log_min_messages = warning\n"
            )
        self._initialised = True

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid`` (None when there is none or it is dead)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> PostgresCluster:
        """initdb (first time) and ``pg_ctl start`` on ``self.port``; waits until it accepts connections."""
        if not self._initialised:
            self._initdb()
        if self.running:
            return self
        self._remove_stale_locks()
        for attempt in range(5):
            proc = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout)),
                             "-o", f"-p {self.port}", "start", check=False, timeout=timeout + 30)
            if proc.returncode == 0:
                break
            log = _tail(self.log)
            if "Address already in use" in log and not self._fixed_port and attempt < 4:
                self.port = free_port()
                continue
            raise RuntimeError(f"pg_ctl start failed: {proc.stderr.strip() or proc.stdout.strip()}\n{log}")
        _sigterm_to_keyboard_interrupt()
        return self

    def ensure_running(self) -> PostgresCluster:
        return self if self.running else self.start()

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """``pg_ctl stop -m fast`` (disconnects clients, clean shutdown)."""
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop",
                  timeout=timeout + 30)

    def restart(self) -> PostgresCluster:
        self.stop()
        return self.start()

    def kill(self, timeout: float = 20) -> None:
        """SIGKILL the postmaster (an outage); waits until its backends noticed and exited."""
        pid = self.pid
        if pid is None:
            return
        kids = _children(pid)
        os.kill(pid, signal.SIGKILL)
        left = _wait_gone([pid, *kids], timeout)
        for p in left:  # backends exit on postmaster death; never leave one behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        _wait_gone(left, 5)
        # The killed postmaster is reaped by init, which can take a moment; until then it is a
        # zombie that still "exists" for the next postmaster's lock-file check.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _exists(pid):
            time.sleep(0.05)

    def _remove_stale_locks(self) -> None:
        """Delete lock files left by a postmaster that is dead (or a zombie awaiting its reaper)."""
        for lock in (self.data / "postmaster.pid", self.base / f".s.PGSQL.{self.port}.lock"):
            try:
                pid = int(lock.read_text().split("\n", 1)[0])
            except (OSError, ValueError):
                continue
            if not pid_alive(pid):
                with contextlib.suppress(OSError):
                    lock.unlink()

    def cleanup(self) -> None:
        """Stop (or kill) the server and delete every file of the cluster."""
        try:
            if self.running:
                try:
                    self.stop(mode="immediate", timeout=20)
                except Exception:
                    self.kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            _unregister(self)

    # -- connections and databases -----------------------------------------------------------------
    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{PG_SUPERUSER}@{HOST}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the maintenance database ``postgres``."""
        return self.url_for("postgres")

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg 3 connection (autocommit) over TCP loopback."""
        import psycopg

        return psycopg.connect(host=HOST, port=self.port, user=PG_SUPERUSER, dbname=dbname, autocommit=True,
                               connect_timeout=10, **kwargs)

    def create_database(self, name: str | None = None, template: str = "template1") -> str:
        """A new empty database (copied from ``template``); returns its SQLAlchemy URL."""
        from psycopg import sql

        name = name or f"t{os.getpid()}_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                         sql.Identifier(template)))
        self._databases.add(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._databases.discard(name)

    def __repr__(self) -> str:
        return f"PostgresCluster(port={self.port}, base={self.base}, running={self.running})"


# -- Chroma server ---------------------------------------------------------------------------------

def find_chroma() -> Path | None:
    """The ``chroma`` executable next to this interpreter (the venv's), else on ``$PATH``."""
    beside = Path(sys.executable).parent / "chroma"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("chroma")
    return Path(found) if found else None


def chroma_unavailable() -> str | None:
    if find_chroma() is None:
        return "the `chroma` executable (shipped by the chromadb wheel) was not found next to python or on $PATH"
    return None


class ChromaServer:
    """``chroma run --path DIR --host 127.0.0.1 --port P`` as a child process.

    ``restart()`` keeps the same path and port, so clients keep their URL.
    """

    def __init__(self, path: Path | None = None, *, port: int | None = None, exe: Path | None = None) -> None:
        found = exe or find_chroma()
        if found is None:
            raise RuntimeError(chroma_unavailable() or "chroma not found")
        self.exe = Path(found)
        self._own_dir = path is None
        self.root = Path(tempfile.mkdtemp(prefix="facedb-chroma-")) if path is None else Path(path).parent
        self.path = self.root / "data" if path is None else Path(path)
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.log = self.root / f"chroma-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._clients: list[Any] = []
        _register(self)

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def heartbeat(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=timeout) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self, timeout: float = 60) -> ChromaServer:
        """Start the server and wait for its heartbeat."""
        if self.running:
            return self
        for attempt in range(5):
            if port_open(self.port) and not self._fixed_port:
                self.port = free_port()
            self.log = self.root / f"chroma-{self.port}.log"
            self.path.mkdir(parents=True, exist_ok=True)
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.exe), "run", "--path", str(self.path), "--host", HOST, "--port", str(self.port)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    env={**os.environ, "NO_COLOR": "1"},
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self.heartbeat():
                    self.starts += 1
                    _sigterm_to_keyboard_interrupt()
                    return self
                time.sleep(0.05)
            code = self.proc.poll()
            if code is None:  # no heartbeat in time
                self.kill()
                raise RuntimeError(f"chroma run gave no heartbeat within {timeout}s:\n{_tail(self.log)}")
            self.proc = None
            log_text = _tail(self.log)
            if "in use" in log_text.lower() and not self._fixed_port and attempt < 4:
                self.port = free_port()
                continue
            raise RuntimeError(f"chroma run exited with {code}:\n{log_text}")
        raise RuntimeError("chroma run did not start")  # pragma: no cover

    def ensure_running(self) -> ChromaServer:
        return self if self.running else self.start()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (graceful), SIGKILL after ``timeout``; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL the server (and anything in its session), then reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def restart(self, graceful: bool = True, timeout: float = 60) -> ChromaServer:
        """Stop (SIGTERM, or SIGKILL with ``graceful=False``) and start again on the same path and port."""
        if graceful:
            self.stop()
        else:
            self.kill()
        fixed, self._fixed_port = self._fixed_port, True
        try:
            return self.start(timeout)
        finally:
            self._fixed_port = fixed

    def client(self, **settings: Any) -> Any:
        import chromadb
        from chromadb.config import Settings

        client = chromadb.HttpClient(host=HOST, port=self.port,
                                     settings=Settings(anonymized_telemetry=False, **settings))
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        """Close the clients ``client()`` gave out (and so their HTTP connections)."""
        from facedb.index.clients import close_client

        clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                close_client(client)

    def cleanup(self) -> None:
        self.close_clients()
        try:
            self.stop(timeout=10)
        finally:
            if self._own_dir:
                shutil.rmtree(self.root, ignore_errors=True)
            _unregister(self)

    def __repr__(self) -> str:
        return f"ChromaServer(url={self.url}, path={self.path}, running={self.running})"


# -- facedb serve ------------------------------------------------------------------------------------

#: Environment variables of the calling process that would point a started ``facedb`` elsewhere
#: (another home, database, server or key), crash it on purpose, or trace it unasked.
SCRUBBED_ENV = ("FACEDB_HOME", "FACEDB_DB_URL", "FACEDB_PACK", "FACEDB_SERVER", "FACEDB_API_KEY",
                "FACEDB_LOCK_TIMEOUT", "FACEDB_CRASH_AT", "FACEDB_TRACE_DIR", "PYTHONPROFILEIMPORTTIME")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``SCRUBBED_ENV``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(extra)
    return env


def facedb_command() -> list[str]:
    """The installed ``facedb`` console script next to this interpreter (else ``python -m facedb.cli``)."""
    exe = shutil.which("facedb", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "facedb.cli"]


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def http_json(host: str, port: int, method: str, path: str, body: Any = None, key: str | None = None,
              uds: Path | None = None, timeout: float = 60.0) -> tuple[int, Any]:
    """One small JSON request (status, decoded body) with the standard library: over TCP, or over
    the Unix socket ``uds`` (a home's ``facedb serve`` socket)."""
    if uds is not None:
        conn: http.client.HTTPConnection = _UnixHTTPConnection(uds, timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = bearer(key) if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def bearer(key: str) -> dict[str, str]:
    """The ``Authorization`` header of an API key."""
    return {"Authorization": f"Bearer {key}"}


def image_files(paths: Sequence[Path], field: str = "images") -> list[tuple[str, tuple[str, bytes]]]:
    """``paths`` as the multipart ``files=`` of an HTTP client (httpx, requests)."""
    return [(field, (p.name, p.read_bytes())) for p in paths]


class FacedbServer:
    """``facedb --home HOME serve --port PORT --analysis-workers N [ARGS...]`` as a child process.

    ``env``: extra variables over ``clean_env()`` (never the caller's ``FACEDB_*`` settings).
    ``processes`` > 1 adds ``--workers P`` (that many server processes on the port: shared stores
    only, so ``env`` must carry ``FACEDB_DB_URL`` and ``FACEDB_CHROMA_URL``); ``start`` then waits
    until every one of them has logged that it is ready, not only for the first answer. The log
    goes to ``log_path`` (default ``HOME/../serve-PORT.log``). As a context manager it is started
    on entry and stopped (killed if need be) on exit.
    """

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None, workers: int = 2,
                 processes: int = 1, log_path: Path | None = None, port: int = 0) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.processes = processes
        extra = ["--workers", str(processes)] if processes != 1 else []
        #: everything after ``serve`` on the command line
        self.args = ["--port", str(self.port), "--analysis-workers", str(workers), *extra, *args]
        self.env = clean_env(**(env or {}))
        self.log_path = log_path or self.home.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        #: seconds from the start to the first ``/healthz`` answer (every process ready)
        self.start_s = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("facedb serve was not started")
        return self.proc.pid

    def start(self, timeout: float = 300.0) -> FacedbServer:
        """Start the server and wait until it answers ``/healthz`` (RuntimeError with the log's end
        if it exits or does not answer within ``timeout``)."""
        t0 = time.perf_counter()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([*facedb_command(), "--home", str(self.home), "serve", *self.args],
                                         stdout=logf, stderr=logf, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"facedb serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if self.processes > 1 and self.log()[offset:].count(" ready (pack ") < self.processes:
                time.sleep(0.1)
                continue
            try:
                status, _ = http_json(HOST, self.port, "GET", "/healthz", timeout=5)
                if status == 200:
                    self.start_s = time.perf_counter() - t0
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"facedb serve did not answer /healthz within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait; the exit code. A server still running ``timeout`` s after SIGTERM is
        killed and a RuntimeError raised: a clean shutdown is part of what is tested."""
        if self.proc is None:
            raise RuntimeError("facedb serve was not started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                self.kill()
                raise RuntimeError(f"facedb serve did not stop within {timeout} s of SIGTERM") from exc
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL the server (if it runs) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        """The ``facedb`` CLI on this server's home (it goes through the server's socket)."""
        return subprocess.run([*facedb_command(), "--home", str(self.home), *args], capture_output=True,
                              env=self.env, input=input, timeout=timeout)

    def cli_json(self, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        """``cli(*args, "--json")``, its output decoded; RuntimeError on an exit code not in ``ok``."""
        res = self.cli(*args, "--json")
        if res.returncode not in ok:
            raise RuntimeError(f"exit {res.returncode}: {res.stderr.decode()}\n{res.stdout.decode()}")
        return json.loads(res.stdout)

    def new_key(self, name: str, scope: str) -> str:
        """A new API key of ``scope`` (created through the CLI, as an operator would)."""
        return str(self.cli_json("keys", "create", name, "--scope", scope)["key"])

    def __enter__(self) -> FacedbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()
