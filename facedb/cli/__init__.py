"""The ``facedb`` command line: parse, call the Python API (or the server that owns the home),
print human text or JSON.

Every command is one call on a *backend*: the local ``FaceDB``, or ``facedb.client.Client``
when a ``facedb serve`` owns the home (its socket ``<home>/facedb.sock``) or ``--server URL``
is given. Both implement ``facedb.contract.backend.Backend`` and return the same result
dataclasses, so the output and the exit codes are the same either way. The backend is chosen
before the command runs (``State.choose``: one look at the socket); nothing heavy is imported
before a command needs it.

Exit codes (``facedb.errors`` holds the one table): 0 success; 1 error; 2 usage error;
3 some inputs failed (the rest was done); 4 subject not found; 5 database busy; 6 model or
dependency problem; 7 search index inconsistent; 8 a server or store is unreachable;
9 API key missing, unknown, revoked or without the scope.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..config import DEFAULT_PACK
from ..errors import FacedbError

if TYPE_CHECKING:
    from ..api import FaceDB
    from ..client import Client
    from ..contract.backend import Backend

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_NOT_FOUND, EXIT_BUSY, EXIT_MODEL, EXIT_INDEX = range(8)
EXIT_UNAVAILABLE, EXIT_AUTH = 8, 9

HELP_OPTIONS = ["-h", "--help"]
CONTEXT_SETTINGS = {"help_option_names": HELP_OPTIONS, "max_content_width": 100}


class State:
    """Global options, and the backend every command calls.

    Which backend is decided before the command runs (``choose``): the client when ``--server``
    is given or a ``facedb serve`` listens on the home's socket, else the local ``FaceDB``. The
    local one is opened on first use (``backend(workers=...)`` passes the command's options), so
    ``--help`` stays instant and the client path imports nothing heavy.
    """

    def __init__(self, *, served: bool = False, **opts: Any) -> None:
        self.server: str | None = opts.pop("server", None)
        self.api_key: str | None = opts.pop("api_key", None)
        #: the collection every command uses (``--collection``; ``default`` when not given)
        self.collection: str = opts.pop("collection", None) or "default"
        self.opts = opts
        #: This run is the re-run of a command whose local backend found the home taken by a
        #: server (``ServedElsewhere``): it must go to that server.
        self.served = served
        self._client: Client | None = None
        self._backend: Backend | None = None
        #: A local ``FaceDB`` was opened as this command's backend: a ``ServedElsewhere`` from it
        #: may re-run the command through the server (see ``FacedbGroup``).
        self.opened_local = False
        #: Every ``FaceDB`` that ``local`` opened, closed by ``close`` (click calls it however the
        #: command ends): an unclosed one keeps its catalog connections and Chroma HTTP sockets
        #: until garbage collection, in a process that runs CLI commands in-process (tests, scripts
        #: on ``CliRunner``) as in any other.
        self._locals: list[FaceDB] = []

    def choose(self) -> None:
        """Pick the backend now, before the command runs (cheap: no database is opened)."""
        from ..client import connect

        self._client = connect(self.server, self.api_key, self.opts.get("home"), collection=self.collection)
        if self._client is None and self.served:
            from ..errors import ServedElsewhere

            raise ServedElsewhere(f"a facedb server took {self.opts.get('home') or 'the home'} while this "
                                  "command waited for it, and stopped again: run the command again")

    def options(self, model: str, **values: Any) -> dict[str, Any]:
        """A command's options as the backend's keywords, as typed (None: not given, so the
        default applies), named as the fields of the request model ``model`` of
        ``facedb.contract.requests``. The backend checks them with that model on every path
        (``FaceDB`` itself; the server, for the client, which sends them as they are). For a local
        backend they are also checked here, so a bad value is refused before any database is
        opened; the client path imports no pydantic. A value that does not fit is a ``UsageError``
        that ``handle_errors`` words with the option's name."""
        given = {name: value for name, value in values.items() if value is not None}
        if self._client is None:
            from ..contract import requests

            requests.parse(getattr(requests, model), given)
        return given

    def backend(self, **extra: Any) -> Backend:
        """The chosen backend; ``extra`` (e.g. ``workers``) configures a local ``FaceDB``."""
        if self._backend is None:
            if self._client is not None:
                self._backend = self._client
            else:
                self.opened_local = True
                self._backend = self.local(**extra)
        return self._backend

    def local(self, **extra: Any) -> FaceDB:
        """A local ``FaceDB`` (commands that must run here, e.g. ``serve`` and ``migrate``)."""
        from ..api import FaceDB

        db = FaceDB(**self.opts, **extra, collection=self.collection)
        self._locals.append(db)
        return db

    def close(self) -> None:
        """Close the backend, the client and every local ``FaceDB``: each once, and all of them
        even when one fails (the first failure is raised after the others are closed)."""
        opened = [self._backend, self._client, *self._locals]
        self._backend, self._client, self._locals = None, None, []
        unique = [c for i, c in enumerate(opened) if c is not None and all(c is not o for o in opened[:i])]
        failure: Exception | None = None
        for closable in unique:
            try:
                closable.close()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


class FacedbGroup(click.Group):
    """The ``facedb`` group: runs the command; re-runs it once through the server when a
    ``facedb serve`` took the home while the local ``FaceDB`` waited for the home lock.

    ``HomeLock`` raises ``ServedElsewhere`` only while waiting for the lock, so the local run
    had not written anything under that wait (a command that writes in several batches, e.g. a
    large ``enroll``, may have written earlier ones: the re-run reports those photos as
    duplicates, and stores nothing twice). The re-run's output is the only output: commands print
    after their backend call, and ``handle_errors`` lets ``ServedElsewhere`` through unprinted.
    """

    def invoke(self, ctx: click.Context) -> Any:
        from ..errors import ServedElsewhere

        args = [*ctx._protected_args, *ctx.args]
        ctx.meta[_ARGS] = args
        try:
            return super().invoke(ctx)
        except ServedElsewhere as exc:
            state = ctx.obj
            if not isinstance(state, State) or not state.opened_local or state.served:
                _fail(exc, args)
            ctx.obj = _RERUN
            ctx._protected_args, ctx.args = args[:1], args[1:]
            try:
                return super().invoke(ctx)
            except ServedElsewhere as again:
                _fail(again, args)


#: ``ctx.meta`` key: the command line after the group's options (the command and its arguments).
_ARGS = "facedb.args"
#: ``ctx.obj`` of a re-run: the group callback builds a ``State`` that must use the server.
_RERUN = object()


def _fail(exc: FacedbError, args: list[str]) -> NoReturn:
    """The error that ``handle_errors`` let through, reported as it reports every error."""
    if "--json" in args:
        emit_json({"error": str(exc), "reason": exc.reason, "exit_code": exc.exit_code})
    click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)


pass_state = click.make_pass_decorator(State)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of text.")(f)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@contextmanager
def handle_errors(as_json: bool = False) -> Iterator[None]:
    """Turn facedb exceptions into one clear line on stderr and a documented exit code."""
    from ..errors import ServedElsewhere

    try:
        yield
    except ServedElsewhere:
        raise  # the group re-runs the command through the server (FacedbGroup)
    except FacedbError as exc:
        message = _worded(exc)
        if as_json:
            emit_json({"error": message, "reason": exc.reason, "exit_code": exc.exit_code})
        click.echo(f"Error: {message}", err=True)
        sys.exit(exc.exit_code)


#: Request fields whose option is not ``--field-name`` (arguments are named as in the usage line).
FLAGS = {"k": "-k", "quality_floor": "--min-quality", "subject": "SUBJECT", "name": "NAME", "request": "request"}


def _worded(exc: FacedbError) -> str:
    """The error's message, with a request model's fields named as the command's options."""
    from ..errors import UsageError

    if not isinstance(exc, UsageError):
        return str(exc)
    return exc.naming({f: FLAGS.get(f, "--" + f.replace("_", "-")) for f, _ in exc.problems})


def progress_bar(total: int, quiet: bool, label: str) -> Any:
    """Click's progress bar on stderr, or a no-op when quiet or stderr is not a terminal."""
    if quiet or total < 2 or not sys.stderr.isatty():
        return _NoBar()
    return click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


@click.group(cls=FacedbGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="facedb-service")
@click.option("--home", type=click.Path(file_okay=False), envvar="FACEDB_HOME",
              help="Database home directory [env FACEDB_HOME; default: per-user data dir].")
@click.option("--db-url", envvar="FACEDB_DB_URL",
              help="SQLAlchemy URL of the catalog [env FACEDB_DB_URL; default: SQLite file in the home].")
@click.option("--pack", envvar="FACEDB_PACK",
              help=f"Model pack: {DEFAULT_PACK} (default, offline), sface, buffalo_l, buffalo_s, antelopev2, or a "
                   "directory of InsightFace ONNX files [env FACEDB_PACK].")
@click.option("--models-dir", type=click.Path(file_okay=False), envvar="FACEDB_MODELS_DIR",
              help="Root of InsightFace packs (<dir>/models/<pack>/) [env FACEDB_MODELS_DIR; default ~/.insightface].")
@click.option("--lock-timeout", type=float, envvar="FACEDB_LOCK_TIMEOUT", show_default=True,
              help="Seconds to wait while another facedb process uses the database [default 60].")
@click.option("--chroma-url", envvar="FACEDB_CHROMA_URL", metavar="URL",
              help="Keep the index on this Chroma server (http://host:port) instead of the home "
                   "[env FACEDB_CHROMA_URL]; with a PostgreSQL --db-url, several facedb processes share both.")
@click.option("--server", envvar="FACEDB_SERVER", metavar="URL",
              help="Send every command to this facedb server (http://host:port) [env FACEDB_SERVER].")
@click.option("--api-key", envvar="FACEDB_API_KEY", metavar="KEY",
              help="API key for --server [env FACEDB_API_KEY; better than the flag, which other users can see].")
@click.option("--collection", envvar="FACEDB_COLLECTION", metavar="NAME",
              help="The collection (gallery) every command uses [env FACEDB_COLLECTION; default: default]; "
                   "see `facedb collections`.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, db_url: str | None, pack: str | None, models_dir: str | None,
        lock_timeout: float | None, chroma_url: str | None, server: str | None, api_key: str | None,
        collection: str | None) -> None:
    """facedb: who is in this photo? Enroll known faces, then search photos for them.

    \b
    Example:
      facedb enroll "Ada Lovelace" photos/ada/
      facedb search party.jpg
      facedb search party.jpg --json | jq '.results[].faces[].identity'

    Distances are cosine distances (1 - cosine similarity, 0 = identical); a face matches a
    subject when the distance is at most the threshold, which every search output echoes.

    While `facedb serve` owns the home, every command goes through it (over the home's
    socket); --server URL (with FACEDB_API_KEY) reaches a remote server.

    \b
    Exit codes: 0 success, 1 error, 2 usage error, 3 some inputs failed (the rest was done),
    4 subject not found, 5 database busy, 6 model or dependency problem, 7 index inconsistent,
    8 server or store unreachable, 9 API key refused.
    """
    state = State(home=home, db_url=db_url, pack=pack, models_dir=models_dir, lock_timeout=lock_timeout,
                  chroma_url=chroma_url, server=server, api_key=api_key, collection=collection,
                  served=ctx.obj is _RERUN)
    ctx.obj = state
    ctx.call_on_close(state.close)
    args = ctx.meta.get(_ARGS, [])
    if ctx.invoked_subcommand is not None and not any(a in HELP_OPTIONS for a in args):
        with handle_errors("--json" in args):
            state.choose()


from . import collections, commands, discover, evaluate, faces, lifecycle, review, service  # noqa: E402,F401  (registers the commands)

if TYPE_CHECKING:  # mypy proves that both backends conform to the protocol; nothing runs here
    from ..api import FaceDB
    from ..client import Client
    from ..contract.backend import Backend

    def _local(db: FaceDB) -> Backend:
        return db

    def _served(client: Client) -> Backend:
        return client


def main() -> None:
    """Console-script entry point.

    Once the command has finished (its output flushed, the lock released, the database
    closed) the process leaves with ``os._exit``: the interpreter's own teardown of the
    loaded libraries (Chroma's Rust runtime, OpenCV, SQLAlchemy) costs about 0.25 s and does
    no work facedb needs.
    """
    try:
        cli.main(prog_name="facedb")
        code: int = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
    _fast_exit(code)


def _fast_exit(code: int) -> None:
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe (e.g. `| head`): nothing left to say
            code = code or EXIT_ERROR
    os._exit(code)
