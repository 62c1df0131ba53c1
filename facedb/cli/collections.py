"""``facedb collections``: the galleries of one database (list, create, delete)."""
from __future__ import annotations

import click

from ..wording import plural
from . import State, cli, emit_json, handle_errors, json_option, pass_state


@cli.group()
def collections() -> None:
    """Collections: several galleries in one database, each with its own subjects, pack,
    threshold and API keys. Every other command works on one (--collection, default `default`).

    \b
    Example:
      facedb collections create lobby --threshold 0.5
      facedb --collection lobby enroll "Ada Lovelace" photos/ada/
      facedb collections list
    """


@collections.command("list")
@json_option
@pass_state
def collections_list(state: State, as_json: bool) -> None:
    """List the collections with their pack, threshold, subjects and faces.

    \b
    Example:
      facedb collections list --json
    """
    with handle_errors(as_json):
        rows = state.backend().collections()
        if as_json:
            emit_json([r.to_dict() for r in rows])
            return
        for r in rows:
            pack = r.pack or "(database default)"
            thr = f"{r.threshold:g}" if r.threshold is not None else "(pack default)"
            click.echo(f"{r.name:<24} pack {pack:<20} threshold {thr:<14} {r.subjects} subjects, {r.faces} faces")
        click.echo(plural(len(rows), "collection"))


@collections.command("create")
@click.argument("name")
@click.option("--pack", "pack_name", metavar="P", help="Model pack of this collection [default: the database's].")
@click.option("--threshold", metavar="0..2",
              help="Match threshold (cosine distance) of this collection [default: the pack's calibrated one].")
@json_option
@pass_state
def collections_create(state: State, name: str, pack_name: str | None, threshold: str | None, as_json: bool) -> None:
    """Create collection NAME (letters, digits, '_', '.', '-'), empty.

    \b
    Example:
      facedb collections create lobby --threshold 0.5
    """
    with handle_errors(as_json):
        opts = state.options("CollectionCreateBody", name=name, pack=pack_name, threshold=threshold)
        info = state.backend().create_collection(**opts)
        if as_json:
            emit_json(info.to_dict())
        else:
            click.echo(f"created collection {info.name!r}")


@collections.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: every subject, photo record and face of NAME is erased.")
@json_option
@pass_state
def collections_delete(state: State, name: str, yes: bool, as_json: bool) -> None:
    """Delete collection NAME and everything in it, bytes included: its index files are
    removed and the stores compacted (docs/storage.md#erasure). `default` cannot be deleted.

    \b
    Example:
      facedb collections delete lobby --yes
    """
    with handle_errors(as_json):
        if not yes:
            from ..errors import UsageError

            raise UsageError(f"deleting collection {name!r} erases all its subjects and faces: add --yes to confirm")
        info = state.backend().delete_collection(name)
        if as_json:
            emit_json(info.to_dict())
        else:
            click.echo(f"deleted collection {info.name!r} ({info.subjects} subjects, {info.faces} faces)")
