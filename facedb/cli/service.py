"""Service commands: ``serve`` (the HTTP server), ``keys`` (its API keys) and ``audit``."""
from __future__ import annotations

import click

from ..wording import plural
from . import State, cli, emit_json, handle_errors, json_option, pass_state


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (keep it loopback or private: put a TLS proxy in front otherwise).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="TCP port (0: any free one).")
@click.option("--max-file-mb", type=click.FloatRange(0.01), default=20, show_default=True,
              help="Largest uploaded image, in MiB (413 above).")
@click.option("--max-request-mb", type=click.FloatRange(0.01), default=64, show_default=True,
              help="Largest request body, in MiB (413 above).")
@click.option("--queue", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Heavy requests (search, enroll, maintenance) in progress at once; more get 503 + Retry-After.")
@click.option("--grace", type=click.FloatRange(0), default=30, show_default=True,
              help="Seconds in-flight requests get to finish after SIGTERM.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes on the same port; more than 1 needs a PostgreSQL --db-url and a --chroma-url.")
@click.option("--recover-every", type=click.FloatRange(0.1), default=30, show_default=True,
              help="Shared stores: seconds between looks for writes a dead facedb process left unfinished.")
@click.option("--analysis-workers", type=click.IntRange(1, 64),
              help="Processes that detect and embed faces, per server process [default: cores / --workers].")
@pass_state
def serve(state: State, host: str, port: int, max_file_mb: float, max_request_mb: float, queue: int,
          grace: float, workers: int, recover_every: float, analysis_workers: int | None) -> None:
    """Run the HTTP API (and the web page at /) in the foreground; logs go to stderr.

    The server owns the home for its whole life: while it runs, every `facedb` command on the
    home goes through it (the home's socket facedb.sock, no key needed). Over TCP every /v1
    call needs an API key: `facedb keys create NAME --scope read|write|admin`.

    \b
    Example:
      facedb serve --port 8765 &
      facedb keys create scripts --scope write
      curl -H "Authorization: Bearer $KEY" -F images=@party.jpg http://127.0.0.1:8765/v1/search
    """
    with handle_errors():
        import os

        from ..config import resolve_home, resolve_settings
        from ..errors import UsageError
        from ..server.app import ServerConfig
        from ..server.run import ServeOptions
        from ..server.run import serve as run_server
        from ..server.uploads import Limits

        settings = resolve_settings(state.opts.get("home"), state.opts.get("db_url"), chroma_url=state.opts.get("chroma_url"))
        if workers > 1 and (not settings.chroma_url or settings.db_url.startswith("sqlite")):
            raise UsageError("--workers above 1 needs shared stores: the catalog in PostgreSQL (--db-url "
                             "postgresql+psycopg://...) and the index on a Chroma server (--chroma-url); "
                             "the embedded index allows one process")
        limits = Limits(max_file_bytes=int(max_file_mb * 1024 * 1024),
                        max_request_bytes=int(max_request_mb * 1024 * 1024))
        options = ServeOptions(host=host, port=port, grace=grace, processes=workers,
                               config=ServerConfig(limits=limits, queue=queue, recover_every_s=recover_every))
        per_process = analysis_workers or max(1, (os.cpu_count() or 1) // workers)
        run_server({**state.opts, "workers": per_process}, resolve_home(state.opts.get("home")), options)


@cli.group()
def keys() -> None:
    """API keys for `facedb serve`: create, list, revoke.

    \b
    Example:
      facedb keys create door-camera --scope read
      curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8765/v1/subjects

    \b
    Scopes: read (search, verify, subjects, show, failures, stats, check, models),
    write (+ enroll, rename, delete), admin (+ repair, vacuum, reindex, keys, audit).
    """


@keys.command("create")
@click.argument("name")
@click.option("--scope", metavar="read|write|admin", required=True,
              help="read: search and look; write: + enroll, rename, delete; admin: + maintenance, keys, audit.")
@click.option("--collection", "limit", metavar="C",
              help="Limit the key to collection C: any other collection, or a server-wide call, is refused (403).")
@json_option
@pass_state
def keys_create(state: State, name: str, scope: str, limit: str | None, as_json: bool) -> None:
    """Create API key NAME; the key is printed once and only its hash is stored.

    \b
    Example:
      facedb keys create door-camera --scope read
      facedb keys create lobby --scope write --collection lobby
    """
    with handle_errors(as_json):
        opts = state.options("KeyCreateBody", name=name, scope=scope, collection=limit)
        info = state.backend().create_key(**opts)
        if as_json:
            emit_json({"name": info.name, "scope": info.scope, "collection": info.collection, "key": info.key})
        else:
            where = f", collection {info.collection}" if info.collection else ""
            click.echo(f"created API key {info.name!r} (scope {info.scope}{where}); it is shown only now:")
            click.echo(info.key)


@keys.command("list")
@json_option
@pass_state
def keys_list(state: State, as_json: bool) -> None:
    """List API keys (names, scopes, when created, revoked and last used; never the keys).

    \b
    Example:
      facedb keys list --json
    """
    with handle_errors(as_json):
        rows = state.backend().keys()
        if as_json:
            emit_json([r.to_dict() for r in rows])
            return
        for r in rows:
            status = "active" if r.active else f"revoked {r.revoked_at}"
            limit = f" collection {r.collection}" if r.collection else ""
            click.echo(f"{r.name:<24} {r.scope:<6} {status:<40} last used {r.last_used_at or 'never'}{limit}")
        click.echo(plural(len(rows), "key"))


@keys.command("revoke")
@click.argument("name")
@json_option
@pass_state
def keys_revoke(state: State, name: str, as_json: bool) -> None:
    """Revoke API key NAME: its next request is refused (401), no restart needed.

    \b
    Example:
      facedb keys revoke door-camera
    """
    with handle_errors(as_json):
        info = state.backend().revoke_key(name)
        if as_json:
            emit_json(info.to_dict())
        else:
            click.echo(f"revoked API key {info.name!r}")


@cli.command()
@click.option("--since", help="Only entries from this time on: ISO date/time (UTC) or a duration (30m, 12h, 7d).")
@click.option("--limit", metavar="N", help="Only the newest N entries (N >= 1).")
@json_option
@pass_state
def audit(state: State, since: str | None, limit: str | None, as_json: bool) -> None:
    """The audit trail: every write and every search, who made it and how it ended.

    Entries hold the time, the API key name ('local' for commands run on this machine), the
    action, the subject, counts and the outcome; never images, embeddings or who a search named.

    \b
    Example:
      facedb audit --since 24h --json
    """
    with handle_errors(as_json):
        opts = state.options("AuditQuery", since=since, limit=limit)
        rows = state.backend().audit(**opts)
        if as_json:
            emit_json([r.to_dict() for r in rows])
            return
        for r in rows:
            subject = (f" [{r.collection}]" if r.collection and r.collection != "default" else "") + \
                (f" {r.subject!r}" if r.subject else "")
            detail = f" ({r.detail})" if r.detail else ""
            click.echo(f"{r.at}  {r.actor:<16} {r.action:<10}{subject} {plural(r.images, 'image')} {plural(r.faces, 'face')} "
                       f"{r.outcome}{detail}")
        click.echo(plural(len(rows), "entry"))
