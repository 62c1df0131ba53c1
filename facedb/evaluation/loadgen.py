"""A small HTTP load generator for ``facedb serve`` (standard library only: threads + http.client).

It runs in its own process (``python -m facedb.evaluation.loadgen``, or the thin
``scripts/bench/loadgen.py``; ``facedb.evaluation.bench.run_loadgen`` starts it and reads its
answer), so that its CPU is not the server's. Each client thread keeps one
kept-alive connection and sends its requests back to back; the requests are encoded before
the clock starts. Every request is bounded (``--requests``), as is the whole run (``--timeout``).

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
import http.client
import ipaddress
import json
import os
import secrets
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
                body, ctype = multipart([(Path(p).name, Path(p).read_bytes()) for p in part], {})
                reqs.append((f"/v1/subjects/{quote(subject, safe='')}/images", body, ctype, len(part)))
        if n:
            reqs = reqs[:n]
    return reqs


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
    reqs = build_requests(args.kind, lines, args.requests)
    warm = build_requests("search", lines, args.warmup * args.clients) if args.kind == "search" and args.warmup else []
    headers = {"Authorization": f"Bearer {key}"} if key else {}
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
        conn = http.client.HTTPConnection(args.host, args.port, timeout=600)

        def send(path: str, body: bytes, ctype: str) -> tuple[int, bytes]:
            nonlocal conn
            for attempt in (1, 2):
                try:
                    conn.request("POST", path, body=body, headers={**headers, "Content-Type": ctype})
                    resp = conn.getresponse()
                    return resp.status, resp.read()
                except (http.client.HTTPException, OSError):
                    conn.close()
                    conn = http.client.HTTPConnection(args.host, args.port, timeout=600)
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        try:
            for j in range(args.warmup if warm else 0):
                path, body, ctype, _ = warm[(idx * args.warmup + j) % len(warm)]
                send(path, body, ctype)
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
            path, body, ctype, n_images = reqs[i]
            t0 = time.perf_counter()
            try:
                status, raw = send(path, body, ctype)
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
