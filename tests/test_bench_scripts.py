"""The scripts under scripts/ are thin command lines over the installed package: none of them
sets up ``sys.path``, each answers ``--help`` from any folder, and ``scripts/bench/run_all.sh``
only passes options the scripts it runs have. Nothing is measured here."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").rglob("*.py"))
RUN_ALL = REPO / "scripts" / "bench" / "run_all.sh"


def test_no_script_sets_up_the_import_path() -> None:
    pattern = re.compile(r"sys\.path\.(insert|append)|PYTHONPATH|site\.addsitedir")
    # server_cpu.py imports facedb as installed; its --tree option runs *other checkouts* (PYTHONPATH
    # set for its subprocesses only) to compare them with this one in the same session.
    exempt = {REPO / "scripts" / "bench" / "server_cpu.py"}
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in SCRIPTS if p not in exempt
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, "scripts must import facedb as installed, not by path: " + ", ".join(offenders)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO / "scripts")))
def test_every_script_answers_help_from_any_folder(script: Path, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout


def _run_all_commands() -> list[list[str]]:
    """Each command of run_all.sh (continuation lines joined) as its arguments after ``$py``."""
    text = RUN_ALL.read_text().replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("$py ")]


def test_run_all_is_valid_bash_and_names_only_existing_scripts_and_options() -> None:
    assert subprocess.run(["bash", "-n", str(RUN_ALL)], capture_output=True).returncode == 0
    commands = _run_all_commands()
    assert len(commands) >= 8
    for cmd in commands:
        script = REPO / cmd[0]
        assert script.is_file(), f"run_all.sh runs {cmd[0]}, which does not exist"
        help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                   timeout=300).stdout
        for opt in (a for a in cmd[1:] if a.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", help_text), f"{cmd[0]} has no {opt}"
    # every benchmark report docs/benchmarks.md links is one run_all.sh rewrites
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    written = {Path(a).name for cmd in commands for a in cmd if a.startswith("docs/")}
    linked = set(re.findall(r"\]\(benchmarks/([\w.-]+\.md)\)", doc))
    missing = linked - written - {"shared_stores_search.md", "shared_stores_migrate.md", "sface_embedder.md",
                                  "service-sface-flip-151f4c7.md", "service-sface-flip.md",
                                  # kept runs of one commit each (a before/after pair)
                                  "service-7146e44.md", "service-50a15b5-same-session.md", "service-12371f9.md",
                                  "cli-through-server-12371f9.md", "service-38bf6a4.md", "service-f85b53c.md",
                                  "service-3f503fc.md", "service-246682e-same-session.md",
                                  "service-e365bdc.md", "service-7df68ed-same-session.md", "service-5ff3ac3.md",
                                  "service-e462054.md", "service-cca1314.md",
                                  # a change measured and not adopted
                                  "worker-pinning.md",
                                  # every client-side write path into a Chroma server (issue 18): one-off runs
                                  "chroma-load.md",
                                  # runs appended one at a time (scale.py --append, hours at 1M faces)
                                  "scale.md",
                                  # a before/after pair of trees in one session (run_all writes server-cpu-latest.md)
                                  "server-cpu.md"}
    assert not missing, f"docs/benchmarks.md links reports run_all.sh does not rewrite: {sorted(missing)}"
