"""The documentation against the code: docs/cli.md says what `--help` says, every relative link
in README.md and docs/*.md reaches a file (and a heading), the README stays an entry point, and
the layers that docs/architecture.md describes are the layers the imports make. Fast: nothing
here opens a database or loads a model."""
from __future__ import annotations

import ast
import importlib.util
import re
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 250


def _docs_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_cli", ROOT / "scripts" / "docs_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- docs/cli.md is the commands' --help -------------------------------------------------------

def test_cli_md_help_section_matches_the_commands() -> None:
    docs_cli = _docs_cli()
    current = docs_cli.CLI_MD.read_text(encoding="utf-8")
    expected = docs_cli.updated(current, docs_cli.render_help())
    # Words, not wrapping: another Click release may wrap the same help differently.
    if expected.split() != current.split():
        pytest.fail("docs/cli.md is out of date with the commands' --help: run `python scripts/docs_cli.py` "
                    "and commit docs/cli.md")


def test_every_visible_command_has_its_help_in_cli_md() -> None:
    from facedb.cli import cli

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name, cmd in cli.commands.items():
        if not cmd.hidden:
            assert f"\n### facedb {name}\n" in text, f"facedb {name} has no help section in docs/cli.md"
    assert "\n### facedb models\n" not in text  # hidden (the former name of packs), as in `facedb --help`


def test_docs_cli_check_reports_a_stale_file_and_the_script_fixes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    docs_cli = _docs_cli()
    stale = tmp_path / "cli.md"
    before, after = "# intro kept as written\n\n", "\n\n## after the markers, kept too\n"
    stale.write_text(f"{before}{docs_cli.BEGIN}\n### facedb search\nold help\n{docs_cli.END}{after}",
                     encoding="utf-8")
    monkeypatch.setattr(docs_cli, "CLI_MD", stale)
    monkeypatch.setattr(docs_cli, "ROOT", tmp_path)

    assert docs_cli.main(["--check"]) == 1
    assert "run `python scripts/docs_cli.py`" in capsys.readouterr().err
    assert docs_cli.main([]) == 0
    fixed = stale.read_text(encoding="utf-8")
    assert fixed.startswith(before) and fixed.endswith(after)
    assert "old help" not in fixed and "Usage: facedb search [OPTIONS] [IMAGES]..." in fixed
    assert docs_cli.main(["--check"]) == 0


def test_docs_cli_refuses_a_file_without_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs_cli = _docs_cli()
    bare = tmp_path / "cli.md"
    bare.write_text("# no markers\n", encoding="utf-8")
    monkeypatch.setattr(docs_cli, "CLI_MD", bare)
    with pytest.raises(SystemExit, match="markers are missing"):
        docs_cli.main([])
    assert bare.read_text(encoding="utf-8") == "# no markers\n"


# -- links ---------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a shell block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).replace("`", "").lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        slug = _slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    links = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # `[x](y)` in inline code is no link
        links += [m.group(1) for m in _LINK.finditer(line)]
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]


DOC_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_the_pages_exist() -> None:
    names = {p.name for p in DOC_FILES}
    assert {"README.md", "cli.md", "http.md", "storage.md", "models.md", "architecture.md", "calibration.md",
            "deploy.md", "benchmarks.md"} <= names


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_heading(doc: Path) -> None:
    broken = []
    for link in relative_links(doc):
        target, _, fragment = link.partition("#")
        dest = (doc.parent / target).resolve() if target else doc
        if not dest.exists():
            broken.append(f"{link}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{link}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"broken links in {doc.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title here\n\n[ok](#title-here) [gone](missing.md) ![pic](img.png) "
                    "[web](https://example.org/x.md) `[code](not-a-link.md)`\n"
                    "```sh\n# not a heading\n[in a block](nope.md)\n```\n", encoding="utf-8")
    assert relative_links(page) == ["#title-here", "missing.md", "img.png"]
    assert anchors(page) == {"title-here"}
    assert _slug("JSON shapes (stable keys)") == "json-shapes-stable-keys"
    assert _slug("The HTTP API (`facedb serve`)") == "the-http-api-facedb-serve"


def test_readme_is_a_short_entry_point() -> None:
    text = README.read_text(encoding="utf-8")
    n = len(text.splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it at most {MAX_README_LINES}: the reference is in docs/"
    for page in ("docs/cli.md", "docs/http.md", "docs/storage.md", "docs/architecture.md", "docs/deploy.md",
                 "docs/calibration.md"):
        assert f"]({page}" in text, f"README.md does not link {page}"


def test_readme_keeps_the_two_commands_that_ci_runs() -> None:
    """.ci/run installs and tests as the README's second command says; the first is the demo."""
    text = README.read_text(encoding="utf-8")
    assert ("python3 -m venv .venv && .venv/bin/pip install . && PATH=\"$PWD/.venv/bin:$PATH\" scripts/demo.sh"
            in text)
    assert ("python3 -m venv .venv && .venv/bin/pip install '.[test]' && .venv/bin/ruff check . && "
            ".venv/bin/mypy && .venv/bin/pytest -q -p no:cacheprovider") in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for step in (".venv/bin/pip install '.[test]'", ".venv/bin/ruff check .", ".venv/bin/mypy",
                 ".venv/bin/pytest -q -p no:cacheprovider"):
        assert step in ci


# -- the layers of docs/architecture.md ---------------------------------------------------------

#: Rank of each top-level part of the package: a module may import its own rank and lower ones.
RANK = {
    "errors": 0, "trace": 0, "config": 0, "wording": 0, "contract": 0,
    "analysis": 1, "store": 1, "catalog": 1, "index": 1, "migrations": 1,
    "operations": 2,
    "api": 3,
    "evaluation": 4,
    "cli": 5, "server": 5, "client": 5,
}
#: Front ends that may import another front end (the CLI chooses the backend and starts serve).
FRONT_END_IMPORTS = {"cli": {"client", "server", "evaluation"}}
#: The light modules: standard library and the shared layer only (no numpy, Pillow, OpenCV,
#: Chroma or SQLAlchemy), so the thin client and the contract may use them.
LIGHT = {"facedb.analysis", "facedb.analysis.files", "facedb.analysis.quality", "facedb.analysis.video", "facedb.store",
         "facedb.store.sockets"}
SHARED = {"errors", "trace", "config", "wording", "contract"}
#: Inside the analysis/stores rank, the only analysis modules that read the catalog.
ANALYSIS_READS_CATALOG = {"facedb.analysis.packs", "facedb.analysis.thumbnails"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def facedb_imports(path: Path) -> set[str]:
    """Every facedb module ``path`` imports, at the top or inside a function, resolved."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "facedb"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "facedb":
                continue
            found.add(target)
            for alias in node.names:  # from package import x: x may be a module (analysis.files)
                sub = ROOT.joinpath(*target.split("."), alias.name)
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    found.add(f"{target}.{alias.name}")
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "facedb"


def _modules() -> list[Path]:
    return sorted(p for p in (ROOT / "facedb").rglob("*.py") if p.parent != ROOT / "facedb" or p.name != "__init__.py")


def layer_violations() -> list[str]:
    bad = []
    for path in _modules():
        me = _module_name(path)
        mine = _part(me)
        if mine not in RANK:
            bad.append(f"{me}: facedb.{mine} has no layer in tests/test_docs.py RANK (and docs/architecture.md)")
            continue
        for target in sorted(facedb_imports(path)):
            theirs = _part(target)
            if theirs == "facedb" or theirs not in RANK:
                continue  # the package itself (its __version__), or a part reported above
            if mine in {"client", "contract"} or me in LIGHT:
                if theirs not in SHARED and target not in LIGHT:
                    who = {"client": "the thin client", "contract": "the contract"}.get(mine, "a light module")
                    bad.append(f"{me} imports {target}: {who} may import only the shared layer and the light "
                               f"modules {sorted(LIGHT)}")
                continue
            if theirs == mine:
                continue
            if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] == 5
                                             and theirs not in FRONT_END_IMPORTS.get(mine, set())):
                bad.append(f"{me} imports {target}: {mine} may not import {theirs}")
            if mine == "analysis" and theirs in {"catalog", "store", "index"} and me not in ANALYSIS_READS_CATALOG:
                bad.append(f"{me} imports {target}: only {sorted(ANALYSIS_READS_CATALOG)} read the stores")
    return bad


def test_imports_follow_the_layers_of_architecture_md() -> None:
    bad = layer_violations()
    assert not bad, "imports that break docs/architecture.md's layers:\n" + "\n".join(bad)


def test_layer_check_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "facedb"
    (fake / "catalog").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "catalog" / "__init__.py").write_text("")
    (fake / "catalog" / "oops.py").write_text("def f():\n    from ..cli import cli\n    from ..errors import X\n")
    (fake / "client.py").write_text("from .catalog import oops\n")
    (fake / "analysis").mkdir()
    (fake / "analysis" / "__init__.py").write_text("")
    (fake / "analysis" / "files.py").write_text("from ..analysis import imaging\n")
    (fake / "analysis" / "imaging.py").write_text("from . import files\n")
    (fake / "contract").mkdir()
    (fake / "contract" / "__init__.py").write_text("from ..analysis import files\n")
    (fake / "contract" / "models.py").write_text("from ..store import stores\n")
    (fake / "store").mkdir()
    (fake / "store" / "__init__.py").write_text("")
    (fake / "store" / "stores.py").write_text("from ..catalog import oops\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    bad = layer_violations()
    assert any("facedb.catalog.oops imports facedb.cli" in b for b in bad)
    assert any("facedb.client imports facedb.catalog: the thin client may import only" in b for b in bad)
    assert any("facedb.analysis.files imports facedb.analysis.imaging: a light module" in b for b in bad)
    assert any("facedb.contract.models imports facedb.store" in b for b in bad)
    assert not any(b.startswith(("facedb.contract imports", "facedb.analysis.imaging")) for b in bad)
    assert not any("errors" in b for b in bad)
