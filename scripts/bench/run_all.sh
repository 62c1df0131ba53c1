#!/usr/bin/env bash
# Run every benchmark (long: about 2 hours on 2 cores) and collect docs/benchmarks.md.
# Usage: scripts/bench/run_all.sh [PYTHON]   (default: python3 with facedb installed)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:-python3}
mkdir -p docs/benchmarks
$py scripts/bench/enroll.py --out docs/benchmarks/enroll.md --json-out docs/benchmarks/enroll.json
$py scripts/bench/peer_face_recognition.py --limit 500 --out docs/benchmarks/peer.md --json-out docs/benchmarks/peer.json
$py scripts/bench/search_scale.py --pairs 128:10000,128:100000,512:10000,512:100000 --out docs/benchmarks/search_scale.md --json docs/benchmarks/search_scale.json
$py scripts/bench/cli_latency.py --out docs/benchmarks/cli_latency.md --json-out docs/benchmarks/cli_latency.json
$py scripts/bench/service.py --out docs/benchmarks/service.md --json-out docs/benchmarks/service.json
{
  echo "# facedb benchmarks"
  echo
  echo "Collected by \`scripts/bench/run_all.sh\`; each section names the exact command that produced it."
  for f in enroll peer search_scale cli_latency service; do echo; cat "docs/benchmarks/$f.md"; done
} > docs/benchmarks.md
