#!/usr/bin/env bash
# Rerun every benchmark whose report docs/benchmarks.md links, each with the command its section
# names, each rewriting its own report under docs/ (long: several hours on 2 cores; each report
# records its own duration). The summary table at the top of docs/benchmarks.md is written by hand
# from those reports and is not touched; only its marked shared-stores section is regenerated
# (shared_stores.py --update-benchmarks-md).
# Usage: scripts/bench/run_all.sh [PYTHON]   (default: python3 with facedb installed; run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:-python3}
mkdir -p docs/benchmarks
# enrollment vs the model limit (full LFW), and the peer (face_recognition) section of peer.md
$py scripts/bench/enroll.py --out docs/benchmarks/enroll.md --json-out docs/benchmarks/enroll.json
$py scripts/bench/enroll.py --limit 2000 --repeats 2 --no-trace \
    --out docs/benchmarks/enroll-sface-flip.md --json-out docs/benchmarks/enroll-sface-flip.json
$py scripts/bench/peer_face_recognition.py --limit 500 --out docs/benchmarks/peer.md --json-out docs/benchmarks/peer.json
# Chroma search at scale (synthetic vectors and real LFW embeddings)
$py scripts/bench/search_scale.py --pairs 128:10000,128:100000,512:10000,512:100000 \
    --out docs/benchmarks/search_scale.md --json docs/benchmarks/search_scale.json
# the CLI from a cold process
$py scripts/bench/cli_latency.py --out docs/benchmarks/cli_latency.md --json-out docs/benchmarks/cli_latency.json
# facedb serve: CLI through the server, HTTP throughput, HTTP enroll, memory over 10,000 searches
$py scripts/bench/service.py --out docs/benchmarks/service.md --json-out docs/benchmarks/service.json
# facedb serve: CPU-ms per HTTP search (server main, analysis workers, load generator) vs the model alone
$py scripts/bench/server_cpu.py --out docs/benchmarks/server-cpu-latest.md
# shared stores: PostgreSQL + a Chroma server (servers from facedb.evaluation.servers)
$py scripts/bench/shared_stores.py --sizes 100000,1000000 --deadline-minutes 72 --update-benchmarks-md \
    --out docs/benchmarks/shared_stores.md --json docs/benchmarks/shared_stores.json
# subject scoring: template vs best sample at 100k faces
$py scripts/bench/template_search.py --faces 100000 --rounds 40 --probes 20 --out docs/benchmarks/template_search.md
# facedb review on an LFW gallery with planted errors (mislabels, group photos, one person under two names)
$py scripts/bench/review_planted.py --out docs/benchmarks/review.md
# erasure: delete + erase of one subject, byte scan of the home (add 1000000 for the 1M target)
$py scripts/bench/erasure.py --faces 20000,100000 --out docs/benchmarks/erasure.md
# open-set threshold calibration on LFW (the embedding pass is cached after the first run)
$py scripts/calibrate_threshold.py --json docs/calibration.json --md docs/calibration.md
# videos: accuracy on slideshow clips built from LFW photos, and seconds of video per second
$py scripts/bench/video.py --out docs/benchmarks/video.md
# facedb discover: clustering quality on LFW (cached embeddings) and speed at 100k synthetic faces
$py scripts/bench/cluster_lfw.py --out docs/benchmarks/discover.md --json docs/benchmarks/discover.json
$py scripts/bench/cluster_speed.py --faces 100000 --out docs/benchmarks/discover.md --json docs/benchmarks/discover.json
# backup and restore (issue 18) at 20k and 100k synthetic faces
$py scripts/bench/backup.py --faces 20000 100000 --out docs/benchmarks/backup.md
