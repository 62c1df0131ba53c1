"""The planted-error measurement of ``facedb review`` (``scripts/bench/review_planted.py``).

A gallery folder of LFW people (``<Person>/<files>``, symlinks to the dataset) with errors
planted the way they happen: photos filed under the wrong person (half of them of people who
are not in the gallery at all), group photos of strangers slipped into folders (composites of
several strangers' photos side by side), one person split under two names, and a copy of a
photo re-saved (other bytes) under another name. The gallery is imported with a default
``facedb import``; ``facedb review --json`` is run; the findings are scored against the manifest
of what was planted. The per-face distances are also read in-process (``operations.review``) to
show how the share found and the share of clean faces flagged move with the rule's factor.
"""
from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import lfw

#: Factors of the threshold tried for ``far_from_own`` (the distributions' table).
FACTOR_GRID = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8)


@dataclass
class Plan:
    """What was planted: file (relative to the gallery) -> kind and the truth about it."""

    people: list[str]
    #: relative path -> {"kind": mislabel_outside | mislabel_inside | group | duplicate | split | clean,
    #:                   "true_person": ..., "filed_as": ...}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    split: tuple[str, str] = ("", "")


def build_gallery(root: Path, dest: Path, *, people: int = 200, max_per_person: int = 6, mislabels: int = 20,
                  groups: int = 6, strangers_per_group: int = 3, duplicates: int = 2, seed: int = 0) -> Plan:
    """Write the planted gallery under ``dest`` and return its manifest."""
    from PIL import Image

    rng = random.Random(seed)
    everyone = lfw.list_people(root)
    several = sorted(p for p, imgs in everyone.items() if len(imgs) >= 2)
    # The split person needs enough photos for two names; pick them first.
    big = sorted(p for p in several if len(everyone[p]) >= 8)
    split_person = rng.choice(big)
    chosen = [split_person] + rng.sample([p for p in several if p != split_person], people - 1)
    in_gallery = set(chosen)
    outsiders = sorted(p for p in everyone if p not in in_gallery)
    plan = Plan(people=sorted(chosen))
    dest.mkdir(parents=True, exist_ok=True)

    def link(rel_src: str, folder: str, kind: str, name: str | None = None, **truth: Any) -> None:
        d = dest / folder
        d.mkdir(exist_ok=True)
        target = d / (name or Path(rel_src).name)
        target.symlink_to((root / rel_src).resolve())
        plan.files[f"{folder}/{target.name}"] = {"kind": kind, "true_person": lfw.person_of(rel_src),
                                                  "filed_as": folder, **truth}

    folders: dict[str, list[str]] = {}
    for person in chosen:
        cap = 2 * max_per_person if person == split_person else max_per_person
        folders[person] = list(everyone[person][:cap])
    # One person under two names: the second half of their photos in a folder of another name.
    half = len(folders[split_person]) // 2
    second = f"{split_person}_2"
    plan.split = (split_person, second)
    for rel in folders[split_person][half:]:
        link(rel, second, "split")
    folders[split_person] = folders[split_person][:half]
    for rel in folders[split_person]:
        link(rel, split_person, "split")
    targets = [p for p in chosen if p != split_person]
    rng.shuffle(targets)
    # Mislabels from inside the gallery: a photo of B moved into A's folder (B keeps >= 2 photos).
    n_inside = mislabels // 2
    donors = [p for p in targets if len(folders[p]) >= 3]
    used: set[str] = set()
    for _ in range(n_inside):
        donor = donors.pop()
        used.add(donor)
        rel = folders[donor].pop()
        receiver = next(p for p in targets if p not in used and p != donor)
        used.add(receiver)
        link(rel, receiver, "mislabel_inside")
    # Mislabels from outside the gallery: a stranger's photo filed under a gallery person.
    for _ in range(mislabels - n_inside):
        stranger = rng.choice(outsiders)
        receiver = next(p for p in targets if p not in used)
        used.add(receiver)
        link(rng.choice(everyone[stranger]), receiver, "mislabel_outside")
    # The clean photos (what is left in each folder).
    for person in chosen:
        if person == split_person:
            continue
        for rel in folders[person]:
            link(rel, person, "clean")
    # Group photos of strangers: several outsiders' photos side by side, in one JPEG.
    for g in range(groups):
        members = rng.sample(outsiders, strangers_per_group)
        tiles = [Image.open(root / rng.choice(everyone[m])).convert("RGB") for m in members]
        canvas = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), "white")
        x = 0
        for t in tiles:
            canvas.paste(t, (x, 0))
            x += t.width
        receiver = next(p for p in targets if p not in used)
        used.add(receiver)
        name = f"group_{g + 1:02d}.jpg"
        canvas.save(dest / receiver / name, quality=92)
        plan.files[f"{receiver}/{name}"] = {"kind": "group", "true_person": "+".join(members), "filed_as": receiver}
    # The same photo under a second name, in other bytes (re-saved smaller): a copy of one of
    # A's clean photos in B's folder.
    clean = [rel for rel, t in plan.files.items() if t["kind"] == "clean"]
    for d in range(duplicates):
        rel = rng.choice(clean)
        owner = rel.split("/", 1)[0]
        receiver = next(p for p in targets if p not in used and p != owner)
        used.add(receiver)
        img = Image.open(dest / rel).convert("RGB").resize((230, 230))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        name = f"copy_{d + 1:02d}.jpg"
        (dest / receiver / name).write_bytes(buf.getvalue())
        plan.files[f"{receiver}/{name}"] = {"kind": "duplicate", "true_person": owner, "filed_as": receiver,
                                            "copy_of": rel}
    return plan


def score(plan: Plan, gallery: Path, review: dict[str, Any], imported: dict[str, Any]) -> dict[str, Any]:
    """The findings of ``review --json`` against the manifest."""
    def rel(path: str) -> str:
        p = Path(path)
        try:
            return str(p.relative_to(gallery))
        except ValueError:
            return str(Path(p.parent.name) / p.name)

    outlier_by_file = {rel(o["image"]): o for o in review["outliers"]}
    dup_files = {rel(d[k]) for d in review["duplicates"] for k in ("image", "other_image")}
    enrolled = _enrolled_files(plan, imported)

    def kind_files(*kinds: str) -> list[str]:
        return [f for f, t in plan.files.items() if t["kind"] in kinds]

    mis = kind_files("mislabel_inside", "mislabel_outside")
    mis_enrolled = [f for f in mis if f in enrolled]
    mis_found = [f for f in mis_enrolled if f in outlier_by_file]
    inside_found = [f for f in kind_files("mislabel_inside") if f in outlier_by_file]
    right_other = [f for f in inside_found if outlier_by_file[f]["nearest_other"] == plan.files[f]["true_person"]]
    groups = kind_files("group")
    groups_enrolled = [f for f in groups if f in enrolled]
    dups = kind_files("duplicate")
    dups_enrolled = [f for f in dups if f in enrolled]
    clean = [f for f in kind_files("clean") if f in enrolled]
    clean_flagged = sorted(f for f in clean if f in outlier_by_file)
    split_faces = [f for f in kind_files("split") if f in enrolled]
    pair = set(plan.split)
    pair_listed = any({la["a"], la["b"]} == pair for la in review["look_alikes"])
    other_pairs = [la for la in review["look_alikes"] if {la["a"], la["b"]} != pair]
    return {
        "people": len(plan.people), "gallery_people_folders": len(plan.people) + 1,
        "faces_enrolled": review["faces"], "subjects": review["subjects"],
        "mislabels_planted": len(mis), "mislabels_enrolled": len(mis_enrolled), "mislabels_found": len(mis_found),
        "mislabels_found_share": _share(len(mis_found), len(mis_enrolled)),
        "mislabels_missed": sorted(set(mis_enrolled) - set(mis_found)),
        "inside_mislabels_found": len(inside_found), "inside_with_right_nearest_other": len(right_other),
        "groups_planted": len(groups), "group_faces_enrolled": len(groups_enrolled),
        "group_faces_found": sum(f in outlier_by_file for f in groups_enrolled),
        "duplicates_planted": len(dups), "duplicates_enrolled": len(dups_enrolled),
        "duplicates_found": sum(f in dup_files for f in dups_enrolled),
        "duplicates_as_outliers": sum(f in outlier_by_file for f in dups_enrolled),
        "clean_faces": len(clean), "clean_flagged": len(clean_flagged),
        "clean_flagged_share": _share(len(clean_flagged), len(clean)),
        "clean_flagged_files": [{"file": f, **{k: outlier_by_file[f][k] for k in
                                               ("reason", "distance_own", "nearest_other", "distance_other")}}
                                for f in clean_flagged],
        "split_pair": list(plan.split), "split_pair_listed": pair_listed,
        "split_faces_flagged": sum(f in outlier_by_file for f in split_faces),
        "other_look_alikes": other_pairs,
        "outliers_total": len(review["outliers"]), "duplicates_total": len(review["duplicates"]),
    }


def _share(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _enrolled_files(plan: Plan, imported: dict[str, Any]) -> set[str]:
    """Gallery files (relative) whose face was enrolled, from the import's JSON."""
    failed = {str(Path(Path(f["path"]).parent.name) / Path(f["path"]).name)
              for s in imported["subjects"] for f in s["failed"]}
    return {f for f in plan.files if f not in failed}


def factor_table(home: Path, plan: Plan, gallery: Path, threshold: float,
                 factors: Sequence[float] = FACTOR_GRID) -> list[dict[str, Any]]:
    """For each factor of ``far_from_own`` (the other rule unchanged): mislabels found and clean
    faces flagged, from the per-face distances (``operations.review.evidence``)."""
    from ..api import FaceDB
    from ..operations.review import evidence, look_alike_pairs

    db = FaceDB(home=home, workers=1)
    try:
        faces = db.catalog.review_faces(db.pack_name)
    finally:
        db.close()
    ev = evidence(faces)
    kinds = []
    for fid in faces.face_ids.tolist():
        p = Path(faces.images[int(fid)])
        kinds.append(plan.files.get(f"{p.parent.name}/{p.name}", {}).get("kind", "?"))
    kinds_arr = np.array(kinds)
    closer = (ev.other <= threshold) & (np.isnan(ev.own) | (ev.other < ev.own))
    mis = np.isin(kinds_arr, ["mislabel_inside", "mislabel_outside"])
    clean = kinds_arr == "clean"
    rows: list[dict[str, Any]] = []
    for f in factors:
        flagged = closer | (~np.isnan(ev.own) & (ev.own > f * threshold))
        rows.append({"factor": f, "distance": round(f * threshold, 3),
                     "mislabels_found": int((flagged & mis).sum()), "mislabels": int(mis.sum()),
                     "clean_flagged": int((flagged & clean).sum()), "clean": int(clean.sum())})
    sid_of = {name: sid for sid, name in faces.names.items()}
    split_ids = {sid_of.get(n) for n in plan.split}
    pairs = look_alike_pairs(ev, 2.0)
    split_d = [d for a, b, d in pairs if {a, b} == split_ids]
    others = [d for a, b, d in pairs if {a, b} != split_ids]
    rows.append({"look_alike": {"split_pair_distance": round(split_d[0], 4) if split_d else None,
                                "closest_other_pair": round(min(others), 4) if others else None}})
    own_clean = ev.own[clean & ~np.isnan(ev.own)]
    own_mis = ev.own[mis & ~np.isnan(ev.own)]
    rows.append({"quantiles": {
        "clean_own_p50": _q(own_clean, 50), "clean_own_p99": _q(own_clean, 99), "clean_own_max": _q(own_clean, 100),
        "mislabel_own_min": _q(own_mis, 0), "mislabel_own_p10": _q(own_mis, 10)}})
    return rows


def _q(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def plan_json(plan: Plan) -> str:
    return json.dumps(asdict(plan), indent=1)
