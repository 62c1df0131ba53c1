"""A small HTTP load generator for ``facedb serve`` (standard library only: threads + http.client).

It runs in its own process (``python -m facedb.evaluation.loadgen``, or the thin
``scripts/bench/loadgen.py``; ``facedb.evaluation.bench.run_loadgen`` starts it and reads its
answer), so that its CPU is not the server's; it still shares the machine's cores with the
server, so it is kept cheap: each client thread keeps one kept-alive socket and sends its
requests back to back, each request (head and multipart body) is encoded once before the clock
starts and sent with one ``sendall``, and the answer is read with a minimal HTTP/1.1 reader
(status line, ``Content-Length`` or chunked body) instead of ``http.client``'s header parser.
Every request is bounded (``--requests``), as is the whole run (``--timeout``).

    # search: each request is one image (multipart field ``images``), cycling through the list
    FACEDB_API_KEY=... python scripts/bench/loadgen.py search --port 8765 --images list.txt \
        --clients 4 --requests 400
    # enroll: each request posts one subject's images (<= 32 per request) to
    # /v1/subjects/<name>/images; the list holds ``<subject>\\t<path>`` lines
    FACEDB_API_KEY=... python scripts/bench/loadgen.py enroll --port 8765 --images pairs.tsv --clients 2

Prints one JSON object: per-request latencies (s), wall time from the first request to the
last answer, requests and images per second, HTTP statuses, and this process's CPU seconds.
Only loopback addresses are accepted.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

CHUNK = 32


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, data in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def build_requests(kind: str, lines: list[str], n: int | None) -> list[tuple[str, bytes, str, int]]:
    """(path, body, content type, images) per request."""
    reqs: list[tuple[str, bytes, str, int]] = []
    if kind == "search":
        bodies = []
        for p in lines:
            body, ctype = multipart([(Path(p).name, Path(p).read_bytes())], {"k": "3"})
            bodies.append(("/v1/search", body, ctype, 1))
        total = n or len(bodies)
        reqs = [bodies[i % len(bodies)] for i in range(total)]
    else:
        groups: dict[str, list[str]] = {}
        for line in lines:
            subject, path = line.split("\t", 1)
            groups.setdefault(subject, []).append(path)
        for subject, paths in groups.items():
            for i in range(0, len(paths), CHUNK):
                part = paths[i:i + CHUNK]
                # multi_face=largest: the work a throughput benchmark counts (the model limit's: the
                # largest face), as the benchmarks' `facedb import --multi-face largest`
                body, ctype = multipart([(Path(p).name, Path(p).read_bytes()) for p in part], {"multi_face": "largest"})
                reqs.append((f"/v1/subjects/{quote(subject, safe='')}/images", body, ctype, len(part)))
        if n:
            reqs = reqs[:n]
    return reqs


def encode_request(path: str, body: bytes, ctype: str, host: str, port: int, headers: dict[str, str]) -> bytes:
    """The whole HTTP/1.1 request (head and body), ready for one ``sendall``."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items()),
            f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One kept-alive HTTP/1.1 connection that sends pre-encoded requests and reads each answer:
    (status, body). A connection the server closed is opened again on the next request."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, bytearray()

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(raw)
        status = int(self._line().split(b" ", 2)[1])
        length, chunked, close = None, False, False
        while line := self._line():
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = b"close" in value
        if chunked:
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._line()
            while self._line():  # trailers, then the blank line
                pass
            body = b"".join(parts)
        elif length is not None:
            body = self._take(length)
        else:  # no length: the body runs to the end of the connection
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body, close = bytes(self.buf), True
        if close:
            self.close()
        return status, body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("search", "enroll"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--images", type=Path, required=True, help="file: one image path per line (enroll: subject TAB path)")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--requests", type=int, help="requests in all [search: one per listed image; enroll: all]")
    ap.add_argument("--warmup", type=int, default=0, help="requests per client before the clock starts (search)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="bound on the whole run, s")
    args = ap.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        print("loadgen: only loopback addresses are allowed", file=sys.stderr)
        return 2
    key = os.environ.get("FACEDB_API_KEY", "")
    lines = [x for x in args.images.read_text().splitlines() if x.strip()]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    encoded: dict[int, bytes] = {}  # one encoding per distinct body (the search list cycles)

    def encode(reqs: list[tuple[str, bytes, str, int]]) -> list[tuple[bytes, int]]:
        out = []
        for path, body, ctype, n_images in reqs:
            raw = encoded.get(id(body))
            if raw is None:
                raw = encoded[id(body)] = encode_request(path, body, ctype, args.host, args.port, headers)
            out.append((raw, n_images))
        return out

    built = build_requests(args.kind, lines, args.requests)
    reqs = encode(built)
    warm_built = build_requests("search", lines, args.warmup * args.clients) \
        if args.kind == "search" and args.warmup else []
    warm = encode(warm_built)
    lock = threading.Lock()
    nxt = [0]
    lat: list[float] = []
    statuses: dict[int, int] = {}
    images_ok = [0]
    errors: list[str] = []
    deadline = time.monotonic() + args.timeout
    barrier = threading.Barrier(args.clients + 1)
    stamps: list[tuple[float, float]] = []

    def client(idx: int) -> None:
        conn = Connection(args.host, args.port, timeout=600)

        def send(raw: bytes) -> tuple[int, bytes]:
            for attempt in (1, 2):
                try:
                    return conn.exchange(raw)
                except (OSError, ValueError, IndexError):
                    conn.close()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        try:
            for j in range(args.warmup if warm else 0):
                send(warm[(idx * args.warmup + j) % len(warm)][0])
        except Exception as exc:  # reported, the run goes on
            with lock:
                errors.append(f"warm-up: {type(exc).__name__}: {exc}")
        barrier.wait()
        while time.monotonic() < deadline:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(reqs):
                break
            request, n_images = reqs[i]
            t0 = time.perf_counter()
            try:
                status, raw = send(request)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            t1 = time.perf_counter()
            with lock:
                lat.append(t1 - t0)
                stamps.append((t0, t1))
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    images_ok[0] += n_images
                elif len(errors) < 20:
                    errors.append(f"HTTP {status}: {raw[:300].decode(errors='replace')}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    barrier.wait()
    c0 = time.process_time()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 60))
    cpu = time.process_time() - c0
    if stamps:
        first, last = min(a for a, _ in stamps), max(b for _, b in stamps)
    else:
        first = last = 0.0
    wall = last - first
    print(json.dumps({
        "kind": args.kind, "clients": args.clients, "requests": len(lat), "planned": len(reqs),
        "images_ok": images_ok[0], "wall_s": wall, "t_first": first, "t_last": last,
        "requests_per_s": len(lat) / wall if wall > 0 else 0.0,
        "images_per_s": images_ok[0] / wall if wall > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": errors[:20],
        "client_cpu_s": cpu, "latencies_s": lat,
    }))
    return 0 if lat and not errors and set(statuses) == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
