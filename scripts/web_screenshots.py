#!/usr/bin/env python3
"""Make the screenshots of the web page in docs/web/*.png.

They are taken by the browser tests themselves (tests/test_web.py, tests/test_web_discover.py), in Debian's headless
Chromium against a real ``facedb serve``: this script runs those tests with
``FACEDB_WEB_SCREENSHOTS`` pointing at the output folder, then lists what it wrote.

    .venv/bin/python scripts/web_screenshots.py            # -> docs/web/
    .venv/bin/python scripts/web_screenshots.py --out /tmp/shots
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 300 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "web", help="folder for the PNGs (default docs/web)")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FACEDB_WEB_SCREENSHOTS": str(out)}
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                          str(ROOT / "tests" / "test_web.py"), str(ROOT / "tests" / "test_web_discover.py")],
                         cwd=ROOT, env=env)
    shots = sorted(out.glob("*.png"))
    for p in shots:
        size = p.stat().st_size
        print(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}  {size / 1024:.0f} KB"
              + ("  (over 300 KB!)" if size > LIMIT else ""))
    if rc != 0:
        print(f"the browser tests failed (exit {rc}): the screenshots may be incomplete", file=sys.stderr)
        return rc
    if not shots:
        print("no screenshot was written (were the browser tests skipped?)", file=sys.stderr)
        return 1
    return 1 if any(p.stat().st_size > LIMIT for p in shots) else 0


if __name__ == "__main__":
    sys.exit(main())
