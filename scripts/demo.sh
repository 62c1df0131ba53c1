#!/usr/bin/env bash
# The main job on the embedded default pack (YuNet + SFace), offline:
# enroll the Yale faces except one photo per person, search those photos, delete a person.
# Usage: scripts/demo.sh [YALE_DIR]   (default: ../shared/datasets/yalefaces beside the checkout)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
yale=${1:-"$here/../shared/datasets/yalefaces"}
facedb=${FACEDB:-facedb}
if [ ! -d "$yale" ]; then
  echo "demo: no Yale faces at $yale; pass a folder of subjectNN.<condition> photos" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FACEDB_HOME="$work/home"
mkdir "$work/gallery"
for f in "$yale"/subject*; do
  case "$f" in *.wink) ;; *) ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$work/gallery/" ;; esac
done
echo "== enroll: every Yale photo except the .wink ones (subject = file name prefix)"
$facedb import "$work/gallery" --name-from prefix --quiet | tail -n 1
echo "== search: the 15 held-out .wink photos"
$facedb search "$yale"/subject0[1-3].wink -k 2
$facedb search "$yale"/subject*.wink --json \
  | python3 -c 'import json,sys
d = json.load(sys.stdin)
ok = sum(r["faces"][0]["identity"] == r["image"].rsplit("/", 1)[1].split(".")[0] for r in d["results"])
print("identified %d/%d held-out photos correctly (threshold %s)" % (ok, len(d["results"]), d["threshold"]))'
echo "== delete subject01, then search its photo again"
$facedb delete subject01 --yes
$facedb search "$yale"/subject01.wink -k 1
$facedb stats
