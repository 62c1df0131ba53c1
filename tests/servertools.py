"""Helpers for the server tests: a real ``facedb serve`` process on a free loopback port.

The server is started as a separate OS process (the installed console script), waited for on
``/healthz``, and always stopped by the test (SIGTERM, then SIGKILL if it does not exit).
Tests talk to it with httpx (an HTTP client independent of facedb's own) and through the
``facedb`` CLI, which goes through the server when one owns the home.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from dbtools import facedb_executable

_SCRUB = ("FACEDB_CRASH_AT", "FACEDB_HOME", "FACEDB_DB_URL", "FACEDB_PACK", "FACEDB_LOCK_TIMEOUT",
          "FACEDB_SERVER", "FACEDB_API_KEY")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(extra)
    return env


class FacedbServer:
    """``facedb --home HOME serve --port PORT ...`` as a child process."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None, workers: int = 2) -> None:
        self.home = home
        self.port = free_port()
        self.args = ["--port", str(self.port), "--analysis-workers", str(workers), *args]
        self.env = clean_env(**(env or {}))
        self.log_path = home.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> FacedbServer:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*facedb_executable(), "--home", str(self.home), "serve", *self.args],
                                     stdout=log, stderr=log, env=self.env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"facedb serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"facedb serve did not answer /healthz within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; the exit code (SIGKILL after ``timeout``: then an AssertionError)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                self.kill()
                raise AssertionError(f"facedb serve did not stop within {timeout} s of SIGTERM") from exc
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        """The ``facedb`` CLI on this server's home (it goes through the server's socket)."""
        return subprocess.run([*facedb_executable(), "--home", str(self.home), *args], capture_output=True,
                              env=self.env, input=input, timeout=timeout)

    def cli_json(self, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        res = self.cli(*args, "--json")
        assert res.returncode in ok, f"exit {res.returncode}: {res.stderr.decode()}\n{res.stdout.decode()}"
        return json.loads(res.stdout)

    def new_key(self, name: str, scope: str) -> str:
        return str(self.cli_json("keys", "create", name, "--scope", scope)["key"])

    def __enter__(self) -> FacedbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def image_files(paths: list[Path], field: str = "images") -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, (p.name, p.read_bytes())) for p in paths]
