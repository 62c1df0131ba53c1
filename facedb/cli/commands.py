"""The database commands: each one is one call on the backend (``FaceDB`` or the server's client)."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..wording import plural

if TYPE_CHECKING:
    from ..contract.backend import MultiFace, NameFrom

from . import EXIT_INDEX, EXIT_PARTIAL, State, cli, emit_json, handle_errors, json_option, pass_state, progress_bar

# -- enroll / import -------------------------------------------------------------------

QUIET_HELP = "No progress bar and no summary: only the inputs that failed are listed (the exit code tells)."
MULTI_FACE_HELP = ("Photos with several faces: resolve = take the one face consistent with the subject's other "
                   "photos (else refuse it as ambiguous_faces); largest = the largest face; skip = refuse the photo.")
ALIGNED_HELP = ("The images are aligned 112x112 face crops (ArcFace five-point template, as many face datasets "
                "ship them): embed each whole, without detection.")


def _print_enroll(rep: Any, quiet: bool = False) -> None:
    """One line per subject, then its failures; with ``quiet`` only the failures."""
    if not quiet:
        click.echo(f"{rep.subject}: {rep.enrolled} enrolled, {plural(rep.duplicates, 'duplicate')} skipped, "
                   f"{len(rep.failed)} failed")
        for im in rep.images:  # only the photos with several faces: which one was taken
            if im.faces > 1:
                taken = f"face {im.taken + 1} taken (1 = the largest)" if im.taken is not None else "none taken"
                click.echo(f"  {im.image}: {im.faces} faces, {taken}")
    for f in rep.failed:
        click.echo(f"  failed [{f.reason}] {f.message}")


def _run_ingest(state: State, quiet: bool, workers: int | None, total: int, label: str,
                fn: Callable[[Any, Callable[[int], None]], Any]) -> Any:
    db = state.backend(workers=workers)
    with progress_bar(total, quiet, label) as bar:
        return fn(db, bar.update)


@cli.command()
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--multi-face", metavar="resolve|largest|skip", default="resolve", show_default=True,
              help=MULTI_FACE_HELP)
@click.option("--min-quality", "min_quality", default="default", show_default=True, metavar="SPEC",
              help="Refuse faces below this quality floor (low_quality): 'default' (eye_px=12,blur=10,raw_norm=7), "
                   "name=value pairs, or 'off'.")
@click.option("--face", "face", type=click.IntRange(1), metavar="N",
              help="Take face N of the one photo given (1 = the largest; the numbers --json gives count from 0).")
@click.option("--aligned", is_flag=True, help=ALIGNED_HELP)
@click.option("--metadata", help='JSON object stored with the subject, e.g. \'{"team": "blue"}\'.')
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes for detection [default: cores].")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@json_option
@pass_state
def enroll(state: State, name: str, paths: tuple[str, ...], multi_face: MultiFace, min_quality: str,
           face: int | None, aligned: bool, metadata: str | None, workers: int | None, quiet: bool,
           as_json: bool) -> None:
    """Enroll the faces in PATHS (image files or directories) as subject NAME.

    Creates the subject if new; images already stored (same SHA-256) are skipped, so
    re-running is safe. Every image that cannot be enrolled is listed with its reason.

    A photo with several faces is stored only when exactly one of its faces is consistent with
    NAME's other photos (already enrolled, or given in the same call); otherwise it is refused
    as ambiguous_faces. Choose its face with --face N, or take the largest with --multi-face largest.

    \b
    Examples:
      facedb enroll "Ada Lovelace" ada1.jpg ada2.jpg photos/ada/
      facedb enroll "Ada Lovelace" team-photo.jpg --face 2
    """
    with handle_errors(as_json):
        from ..analysis.files import iter_image_files

        opts = state.options("EnrollOptions", multi_face=multi_face, quality_floor=min_quality, metadata=metadata,
                             aligned=aligned, face=None if face is None else face - 1)
        total = len(iter_image_files(list(paths)))
        rep = _run_ingest(state, quiet, workers, total, f"enrolling {name}",
                          lambda db, cb: db.enroll(name, list(paths), progress=cb, **opts))
        if as_json:
            emit_json({"pack": state.backend().pack_name, "subjects": [rep.to_dict()],
                       "enrolled": rep.enrolled, "duplicates": rep.duplicates, "n_failed": len(rep.failed)})
        else:
            _print_enroll(rep, quiet)
        if rep.failed:
            sys.exit(EXIT_PARTIAL)


@cli.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--name-from", type=click.Choice(["dir", "prefix"]), default="dir", show_default=True,
              help="dir: DIRECTORY/<subject>/<images>; prefix: flat folder, subject = file name up to the "
                   "first dot or a trailing _NNNN (subject01.happy -> subject01, Ann_Lee_0001.jpg -> Ann_Lee).")
@click.option("--multi-face", metavar="resolve|largest|skip", default="resolve", show_default=True,
              help=MULTI_FACE_HELP)
@click.option("--min-quality", "min_quality", default="default", show_default=True, metavar="SPEC",
              help="Refuse faces below this quality floor (low_quality): 'default' (eye_px=12,blur=10,raw_norm=7), "
                   "name=value pairs, or 'off'.")
@click.option("--aligned", is_flag=True, help=ALIGNED_HELP)
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes for detection [default: cores].")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@json_option
@pass_state
def import_(state: State, directory: str, name_from: NameFrom, multi_face: MultiFace, min_quality: str,
            aligned: bool, workers: int | None, quiet: bool, as_json: bool) -> None:
    """Bulk-enroll a folder of subjects.

    A photo with several faces is resolved after its subject's photos of one face, whatever
    the order of the files (see enroll: ambiguous_faces).

    \b
    Examples:
      facedb import photos/            # photos/<subject>/<images>
      facedb import yalefaces/ --name-from prefix
    """
    with handle_errors(as_json):
        from ..analysis.files import group_subject_files

        opts = state.options("EnrollOptions", multi_face=multi_face, quality_floor=min_quality, aligned=aligned)
        total = sum(len(paths) for paths in group_subject_files(directory, name_from)[0].values())
        rep = _run_ingest(state, quiet, workers, total, "importing",
                          lambda db, cb: db.import_dir(directory, name_from=name_from, progress=cb, **opts))
        if as_json:
            emit_json(rep.to_dict())
        else:
            for s in rep.subjects:
                _print_enroll(s, quiet)
            for f in rep.failed:
                click.echo(f"failed [{f.reason}] {f.message}")
            if not quiet:
                click.echo(f"total: {rep.enrolled} enrolled, {plural(rep.duplicates, 'duplicate')} skipped, "
                           f"{rep.n_failed} failed, {plural(len(rep.subjects), 'subject')}")
        if rep.n_failed:
            sys.exit(EXIT_PARTIAL)


# -- search / verify -------------------------------------------------------------------

def _read_inputs(images: tuple[str, ...], paths_from: str | None) -> list[Any]:
    inputs: list[Any] = []
    for img in images:
        if img == "-":
            def read_stdin() -> bytes:
                with click.open_file("-", "rb") as stdin:  # stdin itself is left open
                    data: bytes = stdin.read()
                return data

            inputs.append(_once("stdin", read_stdin))
        else:
            inputs.append(img)
    if paths_from:
        def lines() -> list[str]:
            with click.open_file(paths_from, "r", encoding="utf-8") as stream:
                return [line.rstrip("\n") for line in stream if line.strip()]

        inputs.extend(_once(f"paths-from:{paths_from}", lines))
    return inputs


def _once(key: str, read: Callable[[], Any]) -> Any:
    """``read()``, kept for the command's re-run through a server (``FacedbGroup``): stdin
    cannot be read twice."""
    meta = click.get_current_context().meta
    if f"facedb.input.{key}" not in meta:
        meta[f"facedb.input.{key}"] = read()
    return meta[f"facedb.input.{key}"]


def _print_video(res: Any) -> None:
    v = res.video
    click.echo(f"  video {v.duration_s:.1f} s at {v.fps:g} fps; {plural(v.frames_read, 'frame')} analysed "
               f"({v.sample_fps:g} per second); {plural(len(res.appearances), 'track')}")
    for a in res.appearances:
        who = a.subject if a.subject is not None else "unknown"
        spans = ", ".join(f"{s:.1f}-{e:.1f} s" for s, e in a.segments)
        dist = f" (distance {a.distance:.3f})" if a.distance is not None else ""
        click.echo(f"  track {a.track} -> {who}{dist}: {spans}; {plural(a.frames, 'frame')}")


def _print_search(rep: Any) -> None:
    for res in rep.results:
        click.echo(res.image)
        if res.error and not res.faces:
            click.echo(f"  error [{res.reason}] {res.error}")
            continue
        if res.video is not None:
            _print_video(res)
            continue
        for i, face in enumerate(res.faces, 1):
            who = face.identity if face.identity is not None else "unknown"
            box = ",".join(f"{v:.0f}" for v in face.bbox)
            line = f"  face {i} [{box}] -> {who}"
            if face.matches:
                line += f" (distance {face.matches[0].distance:.3f})"
            if face.reference_agrees is not None:
                line += "  reference: " + ("agrees" if face.reference_agrees else "DISAGREES")
            click.echo(line)
            for m in face.matches:
                mark = "match" if m.match else "no match"
                click.echo(f"      {m.subject:<24} {m.distance:.3f}  {mark}  (face {m.face_id}, {m.image})")
    click.echo(f"pack {rep.pack}; threshold {rep.threshold:.3f} (cosine distance; match when <= threshold)")


@cli.command()
@click.argument("images", nargs=-1)
@click.option("-k", "k", metavar="1..1000", default="3", show_default=True,
              help="How many subjects (or faces with --by face) to list per face.")
@click.option("--threshold", metavar="0..2",
              help="Match when cosine distance <= this [default: the pack's calibrated value].")
@click.option("--by", metavar="subject|face", default="subject", show_default=True,
              help="subject: best distance per subject; face: the k nearest enrolled faces.")
@click.option("--reference", is_flag=True,
              help="Cross-check with exact scikit-learn NearestNeighbors(metric='cosine') over the catalog.")
@click.option("--scoring", metavar="template|best", default="template", show_default=True,
              help="Subjects by their template (the mean of all their faces) or by their closest face.")
@click.option("--sample-fps", metavar="FPS", default="4", show_default=True,
              help="Videos: frames analysed per second of video (0..30).")
@click.option("--aligned", is_flag=True, help=ALIGNED_HELP)
@click.option("--paths-from", type=click.Path(allow_dash=True),
              help="Also read image paths, one per line, from this file ('-' = stdin).")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Worker processes for detection when searching 32 or more files [default: cores].")
@click.option("--face-id", "face_id", type=int, metavar="ID",
              help="Search with this enrolled face as the probe instead of an IMAGE (the face itself is left out).")
@json_option
@pass_state
def search(state: State, images: tuple[str, ...], k: str, threshold: str | None, by: str, reference: bool,
           scoring: str, sample_fps: str, aligned: bool, paths_from: str | None, workers: int | None,
           face_id: int | None, as_json: bool) -> None:
    """Who is in each IMAGE? Lists every face with its nearest subjects.

    Use '-' as IMAGE to read one image from stdin. A face whose best distance is above the
    threshold is 'unknown' (identity null in JSON). Many files are analysed by worker
    processes, one per core. An IMAGE that is a video (MP4, MOV, AVI, MKV, WebM...) is
    answered by its appearances: each face followed through the video, when it is on screen,
    and who it is (named by a vote of its sampled frames; unknown ones are listed too).

    \b
    Examples:
      facedb search party.jpg
      facedb search a.jpg b.jpg -k 5 --json
      facedb search probe.jpg --by face -k 2 --reference
      cat photo.jpg | facedb search -
      find shots/ -name '*.jpg' | facedb search --paths-from - --json
      facedb search lobby-camera.mp4 --sample-fps 2
      facedb search --face-id 17 -k 5
    """
    with handle_errors(as_json):
        if face_id is not None:
            _search_face(state, face_id, images, paths_from, reference, as_json, k=k, threshold=threshold, by=by,
                         scoring=scoring)
            return

        opts = state.options("SearchOptions", k=k, threshold=threshold, by=by, reference=reference, scoring=scoring,
                             sample_fps=sample_fps, aligned=aligned)
        inputs = _read_inputs(images, paths_from)
        if not inputs:
            raise click.UsageError("give at least one IMAGE (or --paths-from)")
        db = state.backend(workers=workers)
        with progress_bar(len(inputs), False, "searching") as bar:  # many inputs, in a terminal only
            rep = db.search(inputs, **opts, progress=bar.update)
        if as_json:
            emit_json(rep.to_dict())
        else:
            _print_search(rep)
        if rep.n_failed:
            sys.exit(EXIT_PARTIAL)


def _search_face(state: State, face_id: int, images: tuple[str, ...], paths_from: str | None, reference: bool,
                 as_json: bool, **values: Any) -> None:
    """``search --face-id``: one call, with the enrolled face's stored embedding as the probe."""
    from .faces import print_face_search

    if images or paths_from:
        raise click.UsageError("give either IMAGE arguments or --face-id, not both")
    if reference:
        raise click.UsageError("--reference cannot be used with --face-id")
    opts = state.options("FaceSearchOptions", **values)
    rep = state.backend().search_face(face_id, **opts)
    if as_json:
        emit_json(rep.to_dict())
    else:
        print_face_search(rep)


@cli.command()
@click.argument("image")
@click.argument("subject")
@click.option("--threshold", metavar="0..2", help="Match when cosine distance <= this.")
@click.option("--aligned", is_flag=True, help=ALIGNED_HELP)
@json_option
@pass_state
def verify(state: State, image: str, subject: str, threshold: str | None, aligned: bool, as_json: bool) -> None:
    """1:1 check: is the enrolled SUBJECT in IMAGE?

    Every face in IMAGE is compared; the answer is for the face closest to SUBJECT (its
    number, largest face first, and its box are printed). Exit code 0 when it matches, 3 when
    it does not.

    \b
    Example:
      facedb verify door-camera.jpg "Ada Lovelace"
    """
    with handle_errors(as_json):
        opts = state.options("VerifyOptions", subject=subject, threshold=threshold, aligned=aligned)
        data = _read_inputs((image,), None)[0]
        res = state.backend().verify(data, **opts)
        if as_json:
            emit_json(res.to_dict())
        else:
            verdict = "MATCH" if res.match else "NO MATCH"
            where = ""
            if res.face_index is not None and res.face_bbox is not None:
                box = ",".join(f"{v:.0f}" for v in res.face_bbox)
                where = f" (face {res.face_index + 1} of {res.faces_in_image} [{box}])"
            click.echo(f"{verdict}: {res.image}{where} vs {res.subject}: distance {res.distance:.3f} "
                       f"(threshold {res.threshold:.3f}, closest sample {res.matched_image})")
        if not res.match:
            sys.exit(EXIT_PARTIAL)


# -- management ----------------------------------------------------------------------

@cli.command()
@click.argument("subject")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--vacuum", is_flag=True, help="Also rebuild the whole index and compact the catalog (`facedb vacuum`).")
@json_option
@pass_state
def delete(state: State, subject: str, yes: bool, vacuum: bool, as_json: bool) -> None:
    """Delete SUBJECT with all its images, faces and vectors.

    Afterwards no search can return its faces, and (embedded index, SQLite catalog) no file
    of the home keeps a byte of their embeddings or the name: the vectors are overwritten in
    the index before they are deleted, and both SQLite files are compacted. On a Chroma server
    or PostgreSQL see docs/storage.md#erasure. --vacuum also rebuilds the whole index.

    \b
    Example:
      facedb delete "Ada Lovelace" --yes
    """
    with handle_errors(as_json):
        if not yes:
            if not sys.stdin.isatty():
                raise click.UsageError("refusing to delete without confirmation: add --yes")
            click.confirm(f"Delete subject {subject!r} and all its faces?", abort=True)
        rep = state.backend().delete(subject, vacuum=vacuum)
        if as_json:
            emit_json(rep.to_dict())
        else:
            click.echo(f"deleted {rep.subject}: {plural(rep.images, 'image')}, {plural(rep.faces, 'face')}"
                       + (" (stores vacuumed)" if vacuum else ""))


@cli.command()
@click.argument("old")
@click.argument("new")
@json_option
@pass_state
def rename(state: State, old: str, new: str, as_json: bool) -> None:
    """Rename subject OLD to NEW.

    \b
    Example:
      facedb rename "Ada" "Ada Lovelace"
    """
    with handle_errors(as_json):
        state.backend().rename(old, new)
        if as_json:
            emit_json({"old": old, "new": new})
        else:
            click.echo(f"renamed {old} -> {new}")


@cli.command()
@json_option
@pass_state
def subjects(state: State, as_json: bool) -> None:
    """List enrolled subjects with their image and face counts.

    \b
    Example:
      facedb subjects --json
    """
    with handle_errors(as_json):
        rows = state.backend().subjects()
        if as_json:
            emit_json([r.to_dict() for r in rows])
        else:
            for r in rows:
                click.echo(f"{r.name:<32} {plural(r.images, 'image ', 'images', 5)} {plural(r.faces, 'face', width=5)}")
            click.echo(plural(len(rows), "subject"))


@cli.command()
@click.argument("subject")
@json_option
@pass_state
def show(state: State, subject: str, as_json: bool) -> None:
    """Show one subject: metadata, images, faces and failed images.

    \b
    Example:
      facedb show "Ada Lovelace"
    """
    with handle_errors(as_json):
        d = state.backend().show(subject)
        if as_json:
            emit_json(d.to_dict())
            return
        click.echo(f"{d.name}  (created {d.created_at})")
        if d.metadata:
            click.echo(f"metadata: {json.dumps(d.metadata, ensure_ascii=False)}")
        for img in d.images:
            faces = ", ".join(f"face {f['face_id']} ({f['pack']})" for f in img["faces"])
            click.echo(f"  {img['path']}  {img['width']}x{img['height']}  {faces}")
        for f in d.failures:
            click.echo(f"  failed [{f['reason']}] {f['path']}")


@cli.command()
@click.option("--subject", help="Only failures of this subject.")
@click.option("--reason", help="Only this reason (no_face, ambiguous_faces, not_an_image, ...).")
@json_option
@pass_state
def failures(state: State, subject: str | None, reason: str | None, as_json: bool) -> None:
    """List images that could not be enrolled, with their reasons.

    \b
    Example:
      facedb failures --reason no_face
    """
    with handle_errors(as_json):
        rows = state.backend().failures(subject=subject, reason=reason)
        if as_json:
            emit_json([r.to_dict() for r in rows])
        else:
            for r in rows:
                click.echo(f"[{r.reason}] {r.subject}: {r.message}")
            click.echo(plural(len(rows), "failure"))


@cli.command()
@json_option
@pass_state
def stats(state: State, as_json: bool) -> None:
    """Counts, disk use and where the data lives.

    \b
    Example:
      facedb stats
    """
    with handle_errors(as_json):
        s = state.backend().stats().to_dict()
        if as_json:
            emit_json(s)
        else:
            for key, val in s.items():
                click.echo(f"{key:<20} {val}")


@cli.command()
@click.option("--repair", is_flag=True, help="Fix any drift from the catalog (the system of record).")
@json_option
@pass_state
def check(state: State, repair: bool, as_json: bool) -> None:
    """Compare the catalog with the search index; exit 7 when they disagree (unless repaired).

    Also searches for every indexed face (a random 10,000 in larger databases) with its own
    vector: a face the index holds but cannot return is drift too; --repair rebuilds the index.

    \b
    Example:
      facedb check || facedb check --repair
    """
    with handle_errors(as_json):
        rep = state.backend().check(repair=repair)
        if as_json:
            emit_json(rep.to_dict())
        else:
            click.echo(f"pack {rep.pack}: catalog {plural(rep.catalog_faces, 'face')}, index "
                       f"{plural(rep.index_faces, 'vector')}")
            if rep.clean:
                click.echo(f"clean: catalog and index agree; {plural(rep.reach_checked, 'face')} each found by "
                           "a search with its own vector")
            else:
                click.echo(f"drift: {len(rep.missing_from_index)} missing from index, "
                           f"{plural(len(rep.orphans_in_index), 'orphan')} in index, {rep.pending_index} not yet indexed, "
                           f"{plural(rep.pending_deletes, 'pending delete')}, {len(rep.unreachable_in_index)} of "
                           f"{rep.reach_checked} checked unreachable by search, {plural(len(rep.stale_templates), 'stale template')}"
                           + (f", index error: {rep.index_error}" if rep.index_error else ""))
                click.echo("repaired from the catalog" if rep.repaired else "run `facedb check --repair` to fix")
        if not rep.clean and not rep.repaired:
            sys.exit(EXIT_INDEX)


@cli.command()
@json_option
@pass_state
def vacuum(state: State, as_json: bool) -> None:
    """Rebuild the index from the catalog and compact both stores (shrinks the files).

    Deletes erase the bytes by themselves; vacuum also reclaims the space of deleted faces,
    and on PostgreSQL runs VACUUM FULL (docs/storage.md#erasure).

    \b
    Example:
      facedb vacuum
    """
    with handle_errors(as_json):
        res = state.backend().vacuum()
        if as_json:
            emit_json(res.to_dict())
        else:
            click.echo(f"vacuumed: {res.bytes_before} -> {plural(res.bytes_after, 'byte')}")


@cli.command()
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@json_option
@pass_state
def reindex(state: State, quiet: bool, as_json: bool) -> None:
    """Re-embed every stored image with the current pack (after a model change).

    Images whose source file is gone or changed are reported and their faces dropped.

    \b
    Example:
      facedb --pack sface reindex
    """
    with handle_errors(as_json):
        db = state.backend()
        with progress_bar(db.stats().images, quiet, "reindexing") as bar:
            res = db.reindex(progress=bar.update)
        if as_json:
            emit_json(res.to_dict())
        else:
            click.echo(f"{res.pack}: {plural(res.reindexed, 'image')} re-embedded, {len(res.failed)} failed")
            for f in res.failed:
                click.echo(f"  failed [{f.reason}] {f.message}")
        if res.failed:
            sys.exit(EXIT_PARTIAL)


@cli.command()
@json_option
@pass_state
def packs(state: State, as_json: bool) -> None:
    """List the model packs, the active one, and how many faces each has in this database.

    \b
    Example:
      facedb packs
    """
    with handle_errors(as_json):
        rows = state.backend().packs()
        if as_json:
            emit_json([r.to_dict() for r in rows])
        else:
            for r in rows:
                mark = "*" if r.active else " "
                click.echo(f"{mark} {r.name:<12} {plural(r.faces, 'face ', 'faces', 7)}  {r.description}")




@cli.command()
@click.option("--to-db-url", metavar="URL", help="Target catalog (e.g. postgresql+psycopg://facedb@db/faces).")
@click.option("--to-chroma-url", metavar="URL", help="Target Chroma server (http://host:8000).")
@click.option("--to-home", type=click.Path(file_okay=False), help="Target home for an embedded index (and SQLite).")
@json_option
@pass_state
def migrate(state: State, to_db_url: str | None, to_chroma_url: str | None, to_home: str | None,
            as_json: bool) -> None:
    """Copy this database to other stores, then check them; the source stays as it is.

    Rows (subjects, images, faces with their embeddings, failures, keys, audit) are copied with
    their ids, and the target index is built from the copied embeddings. Stop the server that
    owns the home first. Exit 7 when the target does not check clean.

    \b
    Examples:
      facedb migrate --to-db-url postgresql+psycopg://facedb@127.0.0.1/faces --to-chroma-url http://127.0.0.1:8000
      facedb --db-url postgresql+psycopg://... --chroma-url http://... migrate --to-home ~/faces-copy
    """
    with handle_errors(as_json):
        rep = state.local().migrate_to(db_url=to_db_url, chroma_url=to_chroma_url, home=to_home)
        if as_json:
            emit_json(rep.to_dict())
        else:
            rows = ", ".join(f"{n} {t}" for t, n in rep.rows.items() if n)
            click.echo(f"copied {rows} to {rep.target_catalog}; indexed {plural(rep.indexed_faces, 'face')} in "
                       f"{rep.target_index} ({rep.seconds:.1f} s)")
            click.echo("check: clean" if rep.check and rep.check.clean else "check: NOT clean (see --json)")
        if not (rep.check and rep.check.clean):
            sys.exit(EXIT_INDEX)


@cli.command("chroma-clean")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@json_option
def chroma_clean(folder: str, as_json: bool) -> None:
    """Erase what deleted collections left in a Chroma server's data FOLDER (its --path).

    Chroma keeps the files of a deleted collection, deleted vectors included: after `facedb
    vacuum` on a Chroma server, stop that server and run this on its machine to finish the
    erasure (orphan HNSW segment folders removed, chroma.sqlite3 compacted). The server must be
    stopped: Chroma's files are not safe to touch while it runs.

    \b
    Example:
      facedb vacuum && systemctl stop chroma && facedb chroma-clean /var/lib/facedb-chroma
    """
    with handle_errors(as_json):
        from pathlib import Path

        from ..operations.maintenance import clean_chroma_folder

        rep = clean_chroma_folder(Path(folder))
        if as_json:
            emit_json(rep.to_dict())
        else:
            click.echo(f"cleaned {folder}: {rep.bytes_before} -> {plural(rep.bytes_after, 'byte')}")


@cli.command("models", hidden=True)
@json_option
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The former name of `facedb packs`.

    \b
    Example:
      facedb packs
    """
    ctx.invoke(packs, as_json=as_json)
