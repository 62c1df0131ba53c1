"""``facedb review``: what looks wrong in the gallery, with the evidence for each finding."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..wording import plural
from . import State, cli, emit_json, handle_errors, json_option, pass_state

if TYPE_CHECKING:
    from ..contract.review import ReviewReport


@cli.command()
@json_option
@pass_state
def review(state: State, as_json: bool) -> None:
    """List enrolled faces that look like somebody else, with the evidence (cosine distances).

    \b
    outliers     a face far from the mean of its subject's other faces (far_from_own), or
                 matched by another subject better than by its own (closer_to_other)
    look_alikes  two subjects close enough to be one person under two names
    duplicates   one photo under two names (a re-saved or resized copy)

    Read-only: nothing is changed. The distances the rules use scale with the collection's
    threshold and are in the output. Exits 0 whether or not something was found.

    \b
    Example:
      facedb review
      facedb --collection lobby review --json
    """
    with handle_errors(as_json):
        rep = state.backend().review()
        if as_json:
            emit_json(rep.to_dict())
        else:
            _print(rep)


def _d(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print(rep: ReviewReport) -> None:
    click.echo(f"reviewed {plural(rep.subjects, 'subject')}, {plural(rep.faces, 'face')} (pack {rep.pack}, "
               f"threshold {rep.threshold:g})")
    if rep.clean:
        click.echo("nothing looks wrong")
        return
    if rep.outliers:
        click.echo(f"\n{plural(len(rep.outliers), 'outlier')} (own: distance to the mean of the subject's other "
                   f"faces, far_from_own above {rep.outlier_distance:g}; other: the nearest other subject, "
                   f"closer_to_other within {rep.threshold:g}):")
        click.echo(f"  {'face':>7}  {'subject':<24} {'own':>6}  {'other':>6}  {'nearest other':<24} reason / image")
        for o in rep.outliers:
            click.echo(f"  {o.face_id:>7}  {o.subject[:24]:<24} {_d(o.distance_own):>6}  {_d(o.distance_other):>6}  "
                       f"{(o.nearest_other or '-')[:24]:<24} {o.reason}  {o.image}")
    if rep.look_alikes:
        click.echo(f"\n{plural(len(rep.look_alikes), 'look-alike pair')} (templates closer than "
                   f"{rep.look_alike_distance:g}: one person under two names?):")
        for p in rep.look_alikes:
            click.echo(f"  {p.a}  ~  {p.b}  distance {p.distance:.3f}")
    if rep.duplicates:
        click.echo(f"\n{plural(len(rep.duplicates), 'duplicate')} (the same photo under two names, closer than "
                   f"{rep.duplicate_distance:g}):")
        for d in rep.duplicates:
            click.echo(f"  face {d.face_id} {d.subject} ({d.image})  =  face {d.other_face_id} {d.other_subject} "
                       f"({d.other_image})  distance {d.distance:.3f}")
