"""The ``facedb`` command line: parse, call the Python API (or the server that owns the home),
print human text or JSON.

Every command is one call on a *backend*: the local ``FaceDB``, or ``facedb.client.Client``
when a ``facedb serve`` owns the home (its socket ``<home>/facedb.sock``) or ``--server URL``
is given. Both return the same result dataclasses, so the output and the exit codes are the
same either way. Nothing heavy is imported before a command needs it.

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
from typing import Any

import click

from ..config import DEFAULT_PACK
from ..errors import FacedbError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_NOT_FOUND, EXIT_BUSY, EXIT_MODEL, EXIT_INDEX = range(8)
EXIT_UNAVAILABLE, EXIT_AUTH = 8, 9

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class State:
    """Global options; the backend is chosen and opened on first use so ``--help`` stays instant."""

    def __init__(self, **opts: Any) -> None:
        self.server: str | None = opts.pop("server", None)
        self.api_key: str | None = opts.pop("api_key", None)
        self.opts = opts
        self._backend: Any = None

    def backend(self, **extra: Any) -> Any:
        """The server's client when a server owns the home (or ``--server``), else a ``FaceDB``
        that hands over to the server if one takes the home while the command waits for it."""
        if self._backend is None:
            from ..client import connect
            from ..errors import ServedElsewhere

            self._backend = connect(self.server, self.api_key, self.opts.get("home"))
            if self._backend is None:
                from ..api import FaceDB

                try:
                    self._backend = _HandOver(self, FaceDB(**self.opts, **extra))
                except ServedElsewhere:
                    self._backend = connect(None, None, self.opts.get("home"))
        return self._backend

    def local(self, **extra: Any) -> Any:
        """A local ``FaceDB`` (commands that must run here, e.g. ``serve``)."""
        from ..api import FaceDB

        return FaceDB(**self.opts, **extra)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


class _HandOver:
    """A local ``FaceDB`` whose calls go to the server instead if a ``facedb serve`` took the
    home while the call waited for it (nothing was written by then: it never got the lock)."""

    def __init__(self, state: State, local: Any) -> None:
        self._state = state
        self._local = local

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._local, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from ..client import connect
            from ..errors import ServedElsewhere

            try:
                return attr(*args, **kwargs)
            except ServedElsewhere:
                client = connect(None, None, self._state.opts.get("home"))
                if client is None:
                    raise
                self._local.close()
                self._local = client
                return getattr(client, name)(*args, **kwargs)

        return call

    def close(self) -> None:
        self._local.close()


pass_state = click.make_pass_decorator(State)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of text.")(f)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@contextmanager
def handle_errors(as_json: bool = False) -> Iterator[None]:
    """Turn facedb exceptions into one clear line on stderr and a documented exit code."""
    try:
        yield
    except FacedbError as exc:
        if as_json:
            emit_json({"error": str(exc), "reason": exc.reason, "exit_code": exc.exit_code})
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


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


@click.group(context_settings=CONTEXT_SETTINGS)
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
@click.pass_context
def cli(ctx: click.Context, home: str | None, db_url: str | None, pack: str | None, models_dir: str | None,
        lock_timeout: float | None, chroma_url: str | None, server: str | None, api_key: str | None) -> None:
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
    ctx.obj = State(home=home, db_url=db_url, pack=pack, models_dir=models_dir, lock_timeout=lock_timeout,
                    chroma_url=chroma_url, server=server, api_key=api_key)
    ctx.call_on_close(ctx.obj.close)


from . import commands, evaluate, service  # noqa: E402,F401  (registers the commands)


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
