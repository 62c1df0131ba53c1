"""``facedb faces`` (list, remove, move one face at a time) and ``facedb merge``; ``facedb search
--face-id`` is in ``commands.py`` (``print_face_search`` here prints it)."""
from __future__ import annotations

import sys
from typing import Any

import click

from ..wording import plural
from . import State, cli, emit_json, handle_errors, json_option, pass_state


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError("refusing without confirmation: add --yes")
    click.confirm(question, abort=True)


@cli.group()
def faces() -> None:
    """Single faces: see a subject's faces, remove one, move one to another subject.

    \b
    Example:
      facedb faces list "Ada Lovelace"
      facedb faces move 17 18 --to "Grace Hopper"
      facedb faces remove 21 --yes
      facedb search --face-id 17
    """


@faces.command("list")
@click.argument("subject")
@json_option
@pass_state
def faces_list(state: State, subject: str, as_json: bool) -> None:
    """List every face of SUBJECT: id, photo, box, quality, and its cosine distance to the
    subject's template (the normalised mean of its faces). The farthest faces are the ones to
    look at first: a wrong photo enrolled under this name is usually far from the rest.

    \b
    Example:
      facedb faces list "Ada Lovelace" --json
    """
    with handle_errors(as_json):
        rep = state.backend().faces(subject)
        if as_json:
            emit_json(rep.to_dict())
            return
        click.echo(f"{rep.subject}: {plural(len(rep.faces), 'face')} (template of {rep.template_faces}; "
                   f"pack {rep.pack}, threshold {rep.threshold:.3f})")
        for f in rep.faces:
            d = f"{f.distance:.3f}" if f.distance is not None else "  -  "
            box = ",".join(f"{v:.0f}" for v in f.bbox)
            note = "" if f.indexed else "  (not indexed)"
            pack = "" if f.pack == rep.pack else f"  (pack {f.pack})"
            click.echo(f"  face {f.face_id:<8} distance {d}  [{box}]  {f.image}{note}{pack}")


@faces.command("remove")
@click.argument("face_ids", nargs=-1, required=True, type=int, metavar="FACE_ID...")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--vacuum", is_flag=True, help="Also rewrite the stores so the vectors are physically erased now.")
@json_option
@pass_state
def faces_remove(state: State, face_ids: tuple[int, ...], yes: bool, vacuum: bool, as_json: bool) -> None:
    """Remove faces (and photos left without a face) from the catalog and the index, as a
    delete does: no search returns them afterwards. All or nothing: an unknown id (exit 4)
    removes none. A subject left without faces stays (`facedb delete` removes it).

    \b
    Example:
      facedb faces remove 21 22 --yes
    """
    with handle_errors(as_json):
        _confirm(yes, f"Remove {plural(len(set(face_ids)), 'face')}?")
        rep = state.backend().remove_faces(list(face_ids), vacuum=vacuum)
        if as_json:
            emit_json(rep.to_dict())
            return
        who = ", ".join(f"{name} {n}" for name, n in sorted(rep.subjects.items()))
        click.echo(f"removed {plural(rep.faces, 'face')} ({who}), {plural(rep.images, 'image')}"
                   + (" (stores vacuumed)" if vacuum else ""))


@faces.command("move")
@click.argument("face_ids", nargs=-1, required=True, type=int, metavar="FACE_ID...")
@click.option("--to", "to", required=True, metavar="SUBJECT", help="The subject that takes the faces (it must exist).")
@json_option
@pass_state
def faces_move(state: State, face_ids: tuple[int, ...], to: str, as_json: bool) -> None:
    """Move faces (with their photos) to another subject of the collection.

    Both subjects' templates are recomputed and searches name the new subject at once. The
    target must exist (exit 4 otherwise): create it by enrolling, or use `facedb rename`.

    \b
    Example:
      facedb faces move 17 18 --to "Grace Hopper"
    """
    with handle_errors(as_json):
        rep = state.backend().move_faces(list(face_ids), to)
        if as_json:
            emit_json(rep.to_dict())
            return
        src = ", ".join(f"{n} from {name}" for name, n in sorted(rep.subjects.items()))
        click.echo(f"moved {plural(len(rep.moved), 'face')} to {rep.to}" + (f" ({src})" if src else ""))
        if rep.already:
            click.echo(f"  already {rep.to}'s: " + " ".join(str(f) for f in rep.already))


@cli.command()
@click.argument("source")
@click.argument("target")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def merge(state: State, source: str, target: str, yes: bool, as_json: bool) -> None:
    """Merge SOURCE into TARGET: SOURCE's photos and faces join TARGET, and SOURCE is deleted.

    For one person enrolled under two names. TARGET keeps its metadata values and gains the
    keys only SOURCE had; SOURCE's failure records and audit entries become TARGET's.

    \b
    Example:
      facedb merge "A. Lovelace" "Ada Lovelace" --yes
    """
    with handle_errors(as_json):
        _confirm(yes, f"Merge {source!r} into {target!r} (and delete {source!r})?")
        rep = state.backend().merge(source, target)
        if as_json:
            emit_json(rep.to_dict())
            return
        click.echo(f"merged {rep.source} into {rep.target}: {plural(rep.images, 'image')}, "
                   f"{plural(rep.faces, 'face')}")


def print_face_search(rep: Any) -> None:
    """``facedb search --face-id`` as text."""
    box = ",".join(f"{v:.0f}" for v in rep.bbox)
    who = rep.identity if rep.identity is not None else "unknown"
    click.echo(f"face {rep.face_id} of {rep.subject} [{box}] {rep.image} -> {who} (the face itself left out)")
    for m in rep.matches:
        mark = "match" if m.match else "no match"
        click.echo(f"      {m.subject:<24} {m.distance:.3f}  {mark}  (face {m.face_id}, {m.image})")
    click.echo(f"pack {rep.pack}; threshold {rep.threshold:.3f} (cosine distance; match when <= threshold)")
