"""``facedb discover``: the people in photos, enrolled or not, one cluster per person."""
from __future__ import annotations

import sys
from typing import Any

import click

from ..wording import plural
from . import EXIT_PARTIAL, State, cli, emit_json, handle_errors, json_option, pass_state
from .commands import options

#: Clusters listed in the text output (the JSON has them all).
MAX_LISTED = 50


def _print_discover(rep: Any) -> None:
    from ..contract.discover import SAMPLE_FACES

    named = sum(1 for c in rep.clusters if c.subject is not None)
    click.echo(f"{plural(rep.faces, 'face')} in {plural(len(rep.clusters), 'cluster')} "
               f"({named} enrolled, {len(rep.clusters) - named} unknown)"
               + (f"; {plural(len(rep.failed), 'image')} without a usable face" if rep.failed else ""))
    for c in rep.clusters[:MAX_LISTED]:
        who = c.subject if c.subject is not None else "unknown"
        images = list(dict.fromkeys(f.image for f in c.faces))
        more = f" (+{len(images) - SAMPLE_FACES} more)" if len(images) > SAMPLE_FACES else ""
        click.echo(f"  #{c.id:<4} {who:<24} {plural(c.size, 'face'):>9}  {', '.join(images[:SAMPLE_FACES])}{more}")
    if len(rep.clusters) > MAX_LISTED:
        click.echo(f"  ... {plural(len(rep.clusters) - MAX_LISTED, 'more cluster')} (all of them with --json)")
    for f in rep.failed:
        click.echo(f"  failed [{f.reason}] {f.message}")
    click.echo(f"pack {rep.pack}; named when distance <= {rep.threshold:.3f}; "
               f"clusters merged when mean distance <= {rep.cluster_threshold:.3f}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--threshold", metavar="0..2",
              help="Name a face when its distance to an enrolled subject is <= this [default: the collection's].")
@click.option("--cluster-threshold", metavar="0..1", default="0.5", show_default=True,
              help="Merge two groups of faces when their mean cosine distance is <= this (lower: more, purer "
                   "clusters).")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Worker processes for detection [default: cores].")
@json_option
@pass_state
def discover(state: State, paths: tuple[str, ...], threshold: str | None, cluster_threshold: str,
             workers: int | None, as_json: bool) -> None:
    """Who are the people in PATHS (photos or folders)? Every face, one cluster per person.

    Faces of enrolled people are named as 'search' names them; every other face is grouped
    with the faces of the same person (a face seen once is a cluster of its own). Folders are
    walked as 'import' walks them. Nothing is stored. Exit code 3 when some images had no
    usable face.

    \b
    Examples:
      facedb discover party/ --json
      facedb discover a.jpg b.jpg trip/ --cluster-threshold 0.45
    """
    with handle_errors(as_json):
        from ..contract.discover import DiscoverOptions

        opts = options(DiscoverOptions, threshold=threshold, cluster_threshold=cluster_threshold)
        rep = state.backend(workers=workers).discover(list(paths), **opts.keywords())
        if as_json:
            emit_json(rep.to_dict())
        else:
            _print_discover(rep)
        if rep.failed:
            sys.exit(EXIT_PARTIAL)
