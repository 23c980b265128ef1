#!/usr/bin/env bash
# Memory and time of the engine's steps as the chunk count grows, for one or more stowage
# binaries side by side on the same data (docs/PERFORMANCE.md, "Scale").
#
#   scripts/scale.sh [--first MB] [--second MB] WORKDIR BINARY...
#
# Each binary gets a fresh local repository with 1 KiB chunks and no compression (so a
# few GB make millions of chunks), then: `put` of FIRST MB of random data, `put` of
# SECOND MB more, `gc`, `check`, `stats`. Every step runs under `/usr/bin/time`; the
# table gives wall seconds and peak RSS per step and binary. The random files are made
# once in WORKDIR and shared, so the binaries see the same bytes.
set -euo pipefail
first=500
second=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --first) first=$2; shift 2 ;;
    --second) second=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { sed -n 2,11p "$0"; exit 2; }
work=$1; shift
mkdir -p "$work"
for name in first second; do
  mb=${!name}
  file="$work/random-$name-$mb.bin"
  [ -s "$file" ] || head -c "${mb}M" /dev/urandom > "$file"
done
export STOWAGE_PASSWORD=scale-bench
results="$work/results.tsv"
: > "$results"
run=0
for binary in "$@"; do
  run=$((run + 1))
  repo="$work/repo-$run"
  rm -rf "$repo"
  step() {
    local label=$1; shift
    local out="$work/step.out"
    /usr/bin/time -f "%e %M" -o "$work/time.out" "$binary" "$@" --repo "$repo" > "$out" 2>&1 \
      || { cat "$out" >&2; echo "$label failed for $binary" >&2; exit 1; }
    read -r seconds kib < "$work/time.out"
    printf '%s\t%s\t%s\t%s\n' "$run" "$label" "$seconds" "$((kib / 1024))" >> "$results"
  }
  step init init --chunk-min 256 --chunk-avg 1024 --chunk-max 4096 --compression-level 0
  step "put ${first} MB" put "$work/random-first-$first.bin"
  step "put ${second} MB more" put "$work/random-second-$second.bin"
  step gc gc
  step check check
  step stats stats
  echo "binary $run: $binary"
  "$binary" stats --json --repo "$repo" 2>/dev/null \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print("  " + ", ".join(f"{k} {s[k]}" for k in ("backups","chunks","logical_bytes","unique_bytes","stored_bytes")))' \
    || true
done
echo
printf '%-22s' step
for ((i = 1; i <= run; i++)); do printf '  %18s' "binary $i: s / MiB"; done
echo
for label in "put ${first} MB" "put ${second} MB more" gc check stats; do
  printf '%-22s' "$label"
  for ((i = 1; i <= run; i++)); do
    awk -F'\t' -v r="$i" -v l="$label" '$1 == r && $2 == l { printf "  %11s / %4s", $3, $4 }' "$results"
  done
  echo
done
