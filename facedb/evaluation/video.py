"""Video accuracy and throughput: slideshow clips built from LFW photos (enrolled people shown in
photos that were not enrolled, strangers, blank frames), searched as a user would, and scored.

- **found**: for each enrolled person, the share of their true on-screen time covered by
  appearances named as them (target: >= 90 %).
- **strangers named**: appearances named as anyone that overlap a stranger's scene by more than
  a quarter second (target: 0); **wrong names**: ones that overlap another enrolled person's scene.
- **throughput**: seconds of video per wall-clock second of ``FaceDB.search``.
"""
from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clips import Scene, slideshow

OVERLAP_S = 0.25


@dataclass
class Cast:
    enrolled: dict[str, list[Path]]  # name -> photos enrolled
    probes: dict[str, list[Path]]  # name -> photos shown in clips (never enrolled)
    strangers: list[Path]


def pick_cast(lfw: Path, people: int, strangers: int, enroll: int = 3, seed: int = 7) -> Cast:
    """``people`` LFW people with more than ``enroll`` photos (their first ``enroll`` are
    enrolled, the rest are probes) and ``strangers`` people with one photo."""
    many: list[tuple[str, list[Path]]] = []
    ones: list[tuple[str, list[Path]]] = []
    for d in sorted(p for p in lfw.iterdir() if p.is_dir()):
        photos = sorted(d.glob("*.jpg"))
        (many if len(photos) > enroll else ones if len(photos) == 1 else []).append((d.name, photos))
    rng = random.Random(seed)
    chosen = rng.sample(many, min(people, len(many)))
    return Cast(enrolled={n: p[:enroll] for n, p in chosen}, probes={n: p[enroll:] for n, p in chosen},
                strangers=[p[0] for _, p in rng.sample(ones, min(strangers, len(ones)))])


def make_clips(cast: Cast, out: Path, clips: int, scenes_per_clip: int = 8, seed: int = 11
               ) -> list[tuple[Path, list[Scene], list[tuple[float, float]]]]:
    """Clips of ``scenes_per_clip`` scenes (2-4 s each): about 60 % enrolled people, 25 %
    strangers, the rest blank."""
    rng = random.Random(seed)
    names = sorted(cast.probes)
    made = []
    for c in range(clips):
        scenes: list[Scene] = []
        for _ in range(scenes_per_clip):
            r = rng.random()
            seconds = rng.choice((2.0, 3.0, 4.0))
            if r < 0.6:
                who = rng.choice(names)
                scenes.append(Scene(rng.choice(cast.probes[who]), seconds, who))
            elif r < 0.85:
                scenes.append(Scene(rng.choice(cast.strangers), seconds, None))
            else:
                scenes.append(Scene(None, 1.0, None))
        path = out / f"clip{c:02d}.mp4"
        made.append((path, scenes, slideshow(path, scenes)))
    return made


@dataclass
class Score:
    true_s: dict[str, float] = field(default_factory=dict)
    found_s: dict[str, float] = field(default_factory=dict)
    strangers_named: list[str] = field(default_factory=list)
    wrong_names: list[str] = field(default_factory=list)
    unknown_tracks: int = 0
    named_tracks: int = 0
    video_s: float = 0.0
    wall_s: float = 0.0

    def add(self, clip: str, scenes: Sequence[Scene], spans: Sequence[tuple[float, float]],
            appearances: Sequence[Any]) -> None:
        for scene, (s0, s1) in zip(scenes, spans):
            if scene.label is not None:
                self.true_s[scene.label] = self.true_s.get(scene.label, 0.0) + (s1 - s0)
        for ap in appearances:
            if ap.subject is None:
                self.unknown_tracks += 1
                continue
            self.named_tracks += 1
            for scene, (s0, s1) in zip(scenes, spans):
                overlap = sum(max(0.0, min(e, s1) - max(s, s0)) for s, e in ap.segments)
                if overlap <= 0:
                    continue
                if scene.label == ap.subject:
                    self.found_s[ap.subject] = self.found_s.get(ap.subject, 0.0) + overlap
                elif overlap > OVERLAP_S and scene.photo is not None:
                    where = f"{clip} {s0:.1f}-{s1:.1f} s named {ap.subject}"
                    (self.strangers_named if scene.label is None else self.wrong_names).append(where)

    def summary(self) -> dict[str, Any]:
        found = {n: min(1.0, self.found_s.get(n, 0.0) / t) for n, t in self.true_s.items() if t > 0}
        return {
            "people_shown": len(found),
            "found_share_min": round(min(found.values()), 4) if found else None,
            "found_share_median": round(sorted(found.values())[len(found) // 2], 4) if found else None,
            "people_found_90": sum(v >= 0.9 for v in found.values()),
            "found_time_share": round(sum(min(self.found_s.get(n, 0.0), t) for n, t in self.true_s.items())
                                      / max(sum(self.true_s.values()), 1e-9), 4),
            "strangers_named": len(self.strangers_named),
            "wrong_names": len(self.wrong_names),
            "named_tracks": self.named_tracks,
            "unknown_tracks": self.unknown_tracks,
            "video_s": round(self.video_s, 2),
            "wall_s": round(self.wall_s, 2),
            "video_s_per_wall_s": round(self.video_s / self.wall_s, 2) if self.wall_s else None,
            "per_person": {n: round(v, 4) for n, v in sorted(found.items())},
            "errors": self.strangers_named + self.wrong_names,
        }


def run(db: Any, clips: Sequence[tuple[Path, list[Scene], list[tuple[float, float]]]], sample_fps: float
        ) -> dict[str, Any]:
    """Search every clip (one at a time, as a user would) and score the appearances."""
    score = Score()
    for path, scenes, spans in clips:
        t0 = time.perf_counter()
        (res,) = db.search([path], sample_fps=sample_fps).results
        score.wall_s += time.perf_counter() - t0
        if res.error or res.video is None:
            raise RuntimeError(f"{path}: {res.error}")
        score.video_s += res.video.duration_s
        score.add(path.name, scenes, spans, res.appearances or [])
    return score.summary()
