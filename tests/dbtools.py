"""Helpers shared by the database tests: run the CLI in-process or as a real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from facedb.cli import cli
from facedb.evaluation.servers import facedb_command


def run_cli(home: Path, *args: str, input: bytes | None = None) -> tuple[int, str, str]:
    """Invoke ``facedb --home HOME ARGS`` in this process (CliRunner)."""
    result = CliRunner().invoke(cli, ["--home", str(home), *args], input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(home: Path, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
    code, out, err = run_cli(home, *args, "--json")
    assert code in ok, f"exit {code}: {err}\n{out}"
    return json.loads(out)


def facedb_executable() -> list[str]:
    """The ``facedb`` command next to this interpreter (``facedb.evaluation.servers.facedb_command``)."""
    return facedb_command()


def run_process(home: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
                input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``facedb --home HOME ARGS`` as a separate OS process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*facedb_executable(), "--home", str(home), *args], capture_output=True,
                          timeout=timeout, env=full_env, input=input)
