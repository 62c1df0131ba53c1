"""``facedb discover``: the people in photos, enrolled or not, one cluster per person."""
from __future__ import annotations

import sys
from typing import Any

import click

from ..wording import plural
from . import EXIT_PARTIAL, State, cli, emit_json, handle_errors, json_option, pass_state, progress_bar

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
        images = list(dict.fromkeys(f.image if f.frame_s is None else f"{f.image}@{f.frame_s:.1f}s" for f in c.faces))
        more = f" (+{len(images) - SAMPLE_FACES} more)" if len(images) > SAMPLE_FACES else ""
        click.echo(f"  #{c.id:<4} {who:<24} {plural(c.size, 'face'):>9}  {', '.join(images[:SAMPLE_FACES])}{more}")
    if len(rep.clusters) > MAX_LISTED:
        click.echo(f"  ... {plural(len(rep.clusters) - MAX_LISTED, 'more cluster')} (all of them with --json)")
    for f in rep.failed:
        click.echo(f"  failed [{f.reason}] {f.message}")
    click.echo(f"pack {rep.pack}; named when distance <= {rep.threshold:.3f}; "
               f"clusters merged when mean distance <= {rep.cluster_threshold:.3f}")
    if rep.run is not None:
        click.echo(f"saved as run {rep.run!r}: `facedb enroll-cluster {rep.run} ID NAME` enrolls a cluster, "
                   f"`facedb discover --forget {rep.run}` erases the run")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--threshold", metavar="0..2",
              help="Name a face when its distance to an enrolled subject is <= this [default: the collection's].")
@click.option("--cluster-threshold", metavar="0..1", default="0.5", show_default=True,
              help="Merge two groups of faces when their mean cosine distance is <= this (lower: more, purer "
                   "clusters).")
@click.option("--sample-fps", metavar="FPS", default="4", show_default=True,
              help="Videos: frames analysed per second of video (0..30); a video gives one face per track.")
@click.option("--save", metavar="NAME",
              help="Keep this run (its faces, clusters and embeddings, in the catalog) as NAME, for enroll-cluster.")
@click.option("--forget", metavar="RUN", help="Erase the saved run RUN (no PATHS).")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Worker processes for detection [default: cores].")
@json_option
@pass_state
def discover(state: State, paths: tuple[str, ...], threshold: str | None, cluster_threshold: str, sample_fps: str,
             save: str | None, forget: str | None, workers: int | None, as_json: bool) -> None:
    """Who are the people in PATHS (photos, videos or folders)? Every face, one cluster per person.

    Faces of enrolled people are named as 'search' names them; every other face is grouped
    with the faces of the same person (a face seen once is a cluster of its own). Folders are
    walked as 'import' walks them. Nothing is stored, unless --save NAME keeps the run (its
    faces, clusters and embeddings, in the catalog: 'enroll-cluster' enrolls one of its
    clusters; --forget NAME erases it). A video gives one face per track (a face followed
    across its sampled frames), with the time of its best frame. Exit code 3 when some images
    had no usable face.

    \b
    Examples:
      facedb discover party/ --json
      facedb discover a.jpg b.jpg trip/ --cluster-threshold 0.45
      facedb discover trip/ --save trip && facedb enroll-cluster trip 2 "Ada Lovelace"
      facedb discover --forget trip
    """
    with handle_errors(as_json):
        if forget is not None:
            if paths or save is not None:
                raise click.UsageError("--forget RUN takes no PATHS and no --save")
            gone = state.backend().forget_run(forget)
            if as_json:
                emit_json(gone.to_dict())
            else:
                click.echo(f"forgot run {gone.run}: {plural(gone.faces, 'face')} in {plural(gone.clusters, 'cluster')}")
            return
        if not paths:
            raise click.UsageError("give at least one PATH (or --forget RUN)")

        opts = state.options("DiscoverOptions", threshold=threshold, cluster_threshold=cluster_threshold,
                             sample_fps=sample_fps)
        from ..analysis.files import iter_image_files

        total = len(iter_image_files(list(paths)))
        db = state.backend(workers=workers)
        with progress_bar(total, False, "discovering") as bar:  # many files, in a terminal only
            rep = db.discover(list(paths), save=save, **opts, progress=bar.update)
        if as_json:
            emit_json(rep.to_dict())
        else:
            _print_discover(rep)
        if rep.failed:
            sys.exit(EXIT_PARTIAL)


@cli.command("enroll-cluster")
@click.argument("run")
@click.argument("cluster_id", type=int)
@click.argument("name")
@click.option("--min-quality", "quality_floor", metavar="SPEC|off", default="default", show_default=True,
              help="The enrollment quality floor, as for enroll ('eye_px=12,blur=10', or 'off').")
@json_option
@pass_state
def enroll_cluster(state: State, run: str, cluster_id: int, name: str, quality_floor: str, as_json: bool) -> None:
    """Enroll cluster CLUSTER_ID of the saved discover RUN as subject NAME.

    Its photos go through enrollment as 'enroll' sends them (duplicates, the quality floor
    and every other rule apply). A photo where the cluster's face is not the largest
    (not_largest_face), or that was sent as bytes (not_on_disk), is reported, not guessed.
    Exit code 3 when some of its faces were not enrolled.

    \b
    Examples:
      facedb discover trip/ --save trip
      facedb enroll-cluster trip 2 "Ada Lovelace"
    """
    with handle_errors(as_json):
        opts = state.options("EnrollClusterBody", name=name, quality_floor=quality_floor)
        rep = state.backend().enroll_cluster(run, cluster_id, **opts)
        if as_json:
            emit_json(rep.to_dict())
        else:
            click.echo(f"{rep.subject}: {rep.enrolled} enrolled, {plural(rep.duplicates, 'duplicate')} skipped, "
                       f"{len(rep.failed)} failed")
            for f in rep.failed:
                click.echo(f"  failed [{f.reason}] {f.message}")
        if rep.failed:
            sys.exit(EXIT_PARTIAL)
