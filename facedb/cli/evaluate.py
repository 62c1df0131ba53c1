"""``facedb eval``: measure a model pack on a labelled folder (never touches a database)."""
from __future__ import annotations

from typing import Any

import click

from ..wording import plural
from . import State, cli, emit_json, handle_errors, json_option, pass_state, progress_bar


@cli.command("eval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--name-from", type=click.Choice(["dir", "prefix"]), default="dir", show_default=True,
              help="dir: DATASET/<subject>/<images>; prefix: flat folder (subject01.happy -> subject01).")
@click.option("--lfw-pairs", type=click.Path(exists=True, dir_okay=False),
              help="LFW pairs.txt: also report the standard 10-fold pairs accuracy.")
@click.option("--splits", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Random probe/gallery splits for the tutorial protocol.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threshold", type=click.FloatRange(0.0, 2.0), help="Threshold to evaluate [default: the pack's].")
@click.option("--target-fpir", type=click.FloatRange(0.0, 1.0), default=0.01, show_default=True,
              help="Open-set: also report the threshold giving this stranger false-positive rate.")
@click.option("--gallery-sizes", default="100,500,1000,max", show_default=True,
              help="Open-set gallery sizes (subjects), comma-separated; 'max' = all enrolled candidates.")
@click.option("--scoring", type=click.Choice(["template", "best"]), default="template", show_default=True,
              help="Open-set headline: subjects by their template (the mean of their faces, what search does by "
                   "default) or by their closest face; both are reported.")
@click.option("--min-quality", "min_quality", default="default", show_default=True, metavar="SPEC",
              help="Enrollment quality floor whose effect on the open set is reported (gallery faces below it "
                   "left out, as enroll refuses them): 'default' (eye_px=12,blur=10,raw_norm=7), name=value "
                   "pairs, or 'off'.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N images (quick look).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes for detection [default: cores].")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False),
              help="Write distance histograms and the DET curve to this PNG (needs matplotlib).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@json_option
@pass_state
def eval_(state: State, dataset: str, name_from: str, lfw_pairs: str | None, splits: int, seed: int,
          threshold: float | None, target_fpir: float, gallery_sizes: str, scoring: str, min_quality: str,
          limit: int | None, workers: int | None, plot_file: str | None, quiet: bool, as_json: bool) -> None:
    """Measure the model pack on a labelled DATASET (never touches your database).

    Reports the tutorial protocol (precision@1/@2 over random splits), leave-one-out rank-1,
    verification (TAR at FAR 1e-3/1e-2, EER; LFW 10-fold with --lfw-pairs), open-set
    identification (FNIR/FPIR at the threshold in force, and the threshold for --target-fpir;
    subjects scored by template and by closest face; with and without the --min-quality
    floor), detection failures and time per image.

    \b
    Examples:
      facedb eval ../shared/datasets/yalefaces --name-from prefix
      facedb eval ../shared/datasets/lfw --lfw-pairs ../shared/datasets/lfw/pairs.txt --json
    """
    with handle_errors(as_json):
        from pathlib import Path

        from ..analysis.engines import load_engine
        from ..analysis.pipeline import default_workers
        from ..analysis.quality import parse_quality_floor
        from ..config import DEFAULT_PACK
        from ..evaluation import runner

        if plot_file:
            runner.require_matplotlib()
        opts = state.opts
        pack = opts.get("pack") or DEFAULT_PACK
        models_dir = Path(opts["models_dir"]) if opts.get("models_dir") else None
        thr = threshold if threshold is not None else load_engine(pack, models_dir).info.threshold
        floor = parse_quality_floor(min_quality)
        sizes = [None if s.strip() == "max" else int(s) for s in gallery_sizes.split(",") if s.strip()]
        total = len(runner.load_dataset(Path(dataset), name_from, limit).paths)
        with progress_bar(total, quiet, "embedding") as bar:
            rep = runner.evaluate(Path(dataset), pack=pack, models_dir=models_dir, threshold=thr,
                                  name_from=name_from, lfw_pairs_file=Path(lfw_pairs) if lfw_pairs else None,
                                  splits=splits, seed=seed, gallery_sizes=sizes, target_fpir=target_fpir,
                                  workers=workers or default_workers(), limit=limit, progress=bar.update,
                                  scoring=scoring, quality_floor=floor or {})
        if plot_file:
            runner.plot(rep, Path(plot_file))
            rep["plot"] = plot_file
        rep.pop("_distances", None)
        if as_json:
            emit_json(rep)
        else:
            _print_eval(rep)


def _print_eval(r: dict[str, Any]) -> None:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f} %"

    click.echo(f"{r['dataset']}: {plural(r['images'], 'image')}, {plural(r['subjects'], 'subject')}, "
               f"{plural(r['faces_found'], 'face')} found; "
               f"pack {r['pack']}, threshold {r['threshold']:.3f}")
    if r["failures"]:
        click.echo("failures: " + ", ".join(f"{k} {v}" for k, v in r["failures"].items()))
    click.echo(f"time per image: {1000 * r['seconds_per_image']:.1f} ms ({plural(r['workers'], 'worker')})")
    t = r["tutorial"]
    click.echo(f"tutorial protocol ({t['splits']} splits): precision@1 {pct(t['precision_at_1'])}, "
               f"precision@2 {pct(t['precision_at_2'])}")
    if "database_crosscheck" in t:
        c = t["database_crosscheck"]
        click.echo(f"  through a scratch database: precision@2 {pct(c['precision_at_2'])}, "
                   f"reference agrees on {c['reference_agrees']}/{c['probes']}")
    click.echo(f"leave-one-out rank-1: {pct(r['leave_one_out']['rank1_accuracy'])} "
               f"({r['leave_one_out']['probes']} probes)")
    v = r["verification"]
    if "eer" in v:
        click.echo(f"verification: TAR@FAR=1e-3 {pct(v['tar_at_far_0.001'])}, TAR@FAR=1e-2 {pct(v['tar_at_far_0.01'])}, "
                   f"EER {pct(v['eer'])} (at {v['eer_threshold']:.3f}); at threshold: TAR {pct(v['at_threshold']['tar'])}, "
                   f"FAR {pct(v['at_threshold']['far'])}")
    if "lfw_pairs" in r:
        lp = r["lfw_pairs"]
        click.echo(f"LFW pairs 10-fold: {pct(lp['accuracy_mean'])} ± {pct(lp['accuracy_std'])} "
                   f"({lp['pairs_without_face']} pairs without a face, counted wrong)")
    o = r["open_set"]
    floor = o.get("quality_floor")
    head = o.get("scoring", "best")
    floor_text = (f"quality floor {', '.join(f'{k}={v:g}' for k, v in floor.items())}: "
                  f"{o.get('faces_below_floor', 0)} of {r['faces_found']} faces below it" if floor else
                  "no quality floor")
    click.echo(f"open-set identification (subjects scored by {head}; 'template' = the mean of a subject's faces, "
               f"'best' = its closest face; {floor_text}):")
    for row in o["rows"]:
        by = row.get("by_scoring", {head: row})
        qf = row.get("quality_floor") or {}
        for scoring in sorted(by, key=lambda sc: sc != head):
            res = by[scoring]
            at = res["at_threshold"]
            key = next(k for k in res if k.startswith("at_fpir_"))
            ch = res[key]
            line = (f"  gallery {row['gallery_subjects']:>5} subjects, {scoring:<8}: at {at['threshold']:.3f} "
                    f"FNIR {pct(at['fnir'])} FPIR {pct(at['fpir'])}; FPIR<={key[8:]} at {ch['threshold']:.3f}: "
                    f"FNIR {pct(ch['fnir'])}")
            fl = qf.get("by_scoring", {}).get(scoring)
            if fl:
                line += (f"; with the floor: FNIR {pct(fl['at_threshold']['fnir'])} "
                         f"FPIR {pct(fl['at_threshold']['fpir'])}")
            click.echo(line)
        if qf:
            click.echo(f"    quality floor: {qf['gallery_images_below_floor']} gallery faces below it, "
                       f"{qf['subjects_left_out']} subjects left with none (their probes count as strangers)")


