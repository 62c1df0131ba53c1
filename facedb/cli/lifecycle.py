"""``facedb backup`` / ``facedb restore``: one snapshot file of a database, and its restore."""
from __future__ import annotations

import sys

import click

from ..wording import plural
from . import EXIT_INDEX, State, cli, emit_json, handle_errors, json_option, pass_state


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@pass_state
def backup(state: State, file: str, as_json: bool) -> None:
    """Write one consistent snapshot of the database to FILE (a zip, 0600).

    It holds every collection's subjects, images and faces with their embeddings, the failure
    records, the API keys (hashed), the audit trail, the model packs' contracts and, for the
    embedded index, its files (a restore copies them instead of rebuilding the index); nothing
    of a subject deleted before. Writes go on meanwhile (they wait while the index is copied);
    while a server owns the home, it writes the snapshot (an admin call).

    \b
    Example:
      facedb backup /backups/faces-$(date +%F).zip
    """
    with handle_errors(as_json):
        rep = state.backend().backup(file)
        if as_json:
            emit_json(rep.to_dict())
        else:
            faces = sum(rep.faces_by_pack.values())
            click.echo(f"wrote {rep.path}: {plural(rep.rows.get('subjects', 0), 'subject')}, "
                       f"{plural(faces, 'face')}, {plural(rep.rows.get('audit', 0), 'audit entry', 'audit entries')} "
                       f"({plural(rep.bytes, 'byte')}, {rep.seconds:.1f} s)")
            click.echo("index: shipped" if rep.index_shipped else f"index: not shipped ({rep.index_note})")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--reindex-from-images", is_flag=True,
              help="Accept a snapshot made with other model weights: re-embed its photos from their files "
                   "(they must still be on disk, unchanged).")
@json_option
@pass_state
def restore(state: State, file: str, reindex_from_images: bool, as_json: bool) -> None:
    """Restore the snapshot FILE into an empty home or database, then check it.

    A home or database that holds anything is refused (exit 1): restore into a new --home, or an
    empty --db-url (SQLite or PostgreSQL, whichever the snapshot came from). A snapshot made with
    other model weights is refused (exit 6) unless --reindex-from-images. The index is the
    snapshot's own when it carries it and it checks out against the catalog ("index: shipped"),
    otherwise it is built from the restored embeddings ("index: rebuilt", and why). Exit 7 when
    the result does not check clean.

    \b
    Examples:
      facedb --home ~/faces-restored restore /backups/faces-2026-12-04.zip
      facedb --db-url postgresql+psycopg://facedb@db/faces --chroma-url http://db:8000 restore faces.zip
    """
    with handle_errors(as_json):
        rep = state.backend().restore(file, reindex_from_images=reindex_from_images)
        if as_json:
            emit_json(rep.to_dict())
        else:
            click.echo(f"restored {plural(rep.rows.get('subjects', 0), 'subject')}, "
                       f"{plural(rep.rows.get('faces', 0), 'face')} into {rep.catalog}; indexed "
                       f"{plural(rep.indexed_faces, 'face')} ({rep.seconds:.1f} s)")
            if rep.reindexed or rep.failed:
                click.echo(f"re-embedded {plural(rep.reindexed, 'face')} from their photos; "
                           f"{plural(len(rep.failed), 'photo')} could not be")
            click.echo(f"index: {rep.index_path}" + (f" ({rep.index_note})" if rep.index_note else ""))
            click.echo("check: clean" if rep.clean else "check: NOT clean (see --json)")
        if not rep.clean:
            sys.exit(EXIT_INDEX)
