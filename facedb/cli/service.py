"""Service commands: ``serve`` (the HTTP server), ``keys`` (its API keys) and ``audit``."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import click

from . import State, cli, emit_json, handle_errors, json_option, pass_state


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
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), required=True)
@json_option
@pass_state
def keys_create(state: State, name: str, scope: str, as_json: bool) -> None:
    """Create API key NAME; the key is printed once and only its hash is stored.

    \b
    Example:
      facedb keys create door-camera --scope read
    """
    with handle_errors(as_json):
        info = state.backend().create_key(name, scope)
        if as_json:
            emit_json({"name": info.name, "scope": info.scope, "key": info.key})
        else:
            click.echo(f"created API key {info.name!r} (scope {info.scope}); it is shown only now:")
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
            click.echo(f"{r.name:<24} {r.scope:<6} {status:<40} last used {r.last_used_at or 'never'}")
        click.echo(f"{len(rows)} keys")


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


def _parse_since(value: str | None) -> datetime | None:
    """An ISO date/time (UTC when no zone is given) or a duration such as 30m, 12h, 7d."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(timezone.utc) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use an ISO date/time (2026-12-01T08:00) or a duration (30m, 12h, 7d)",
                                 param_hint="--since") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@cli.command()
@click.option("--since", help="Only entries from this time on: ISO date/time (UTC) or a duration (30m, 12h, 7d).")
@click.option("--limit", type=click.IntRange(1), help="Only the newest N entries.")
@json_option
@pass_state
def audit(state: State, since: str | None, limit: int | None, as_json: bool) -> None:
    """The audit trail: every write and every search, who made it and how it ended.

    Entries hold the time, the API key name ('local' for commands run on this machine), the
    action, the subject, counts and the outcome; never images, embeddings or who a search named.

    \b
    Example:
      facedb audit --since 24h --json
    """
    with handle_errors(as_json):
        rows = state.backend().audit(since=_parse_since(since), limit=limit)
        if as_json:
            emit_json([r.to_dict() for r in rows])
            return
        for r in rows:
            subject = f" {r.subject!r}" if r.subject else ""
            detail = f" ({r.detail})" if r.detail else ""
            click.echo(f"{r.at}  {r.actor:<16} {r.action:<10}{subject} images {r.images} faces {r.faces} "
                       f"{r.outcome}{detail}")
        click.echo(f"{len(rows)} entries")
