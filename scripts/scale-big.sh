#!/usr/bin/env bash
# A repository grown in steps to millions of chunks and tens of thousands of backups with
# `stowage bench scale`, and at each step the engine's work on it timed under
# /usr/bin/time (docs/PERFORMANCE.md, "Scale").
#
#   scripts/scale-big.sh WORKDIR BINARY TAR STEP...
#
# Each STEP is CHUNKS:BACKUPS to add (e.g. 1000000:10000 9000000:90000). After each
# step: `put` of TAR (a real file, e.g. linux-6.12.tar, then purged so the next step
# starts from generated data only), `stats`, `ls` of one series, `forget --dry-run` of
# that series, `gc --dry-run`, `gc`, `check`, `repair index`. TAR is also put into an
# empty repository first, for the comparison. Prints a table of seconds and peak MiB.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,12p "$0"; exit 2; }
work=$1 binary=$2 tar=$3; shift 3
mkdir -p "$work"
export STOWAGE_PASSWORD=scale-bench
results="$work/results.tsv"
: > "$results"
step() {
  local repo=$1 label=$2; shift 2
  local out="$work/step.out"
  /usr/bin/time -f "%e %M" -o "$work/time.out" "$binary" "$@" --repo "$repo" > "$out" 2>&1 \
    || { cat "$out" >&2; echo "$label failed" >&2; exit 1; }
  read -r seconds kib < "$work/time.out"
  printf '%s\t%s\t%s\n' "$label" "$seconds" "$((kib / 1024))" | tee -a "$results"
  tail -n 2 "$out" | sed 's/^/    /'
}
empty="$work/empty"
rm -rf "$empty"
"$binary" init --repo "$empty" > /dev/null 2>&1
step "$empty" "put tar into an empty repository" put "$tar" --series tar
rm -rf "$empty"
repo="$work/repo"
rm -rf "$repo"
"$binary" init --repo "$repo" > /dev/null 2>&1
for spec in "$@"; do
  chunks=${spec%%:*} backups=${spec##*:}
  step "$repo" "bench scale +$chunks chunks +$backups backups" bench scale --chunks "$chunks" --backups "$backups"
  total=$("$binary" stats --json --repo "$repo" 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); print("%d chunks, %d backups, %d packs" % (s["chunks"], s["backups"], s["packs"]))')
  echo "## at $total" | tee -a "$results"
  step "$repo" "put tar" put "$tar" --series tar
  id=$("$binary" ls --repo "$repo" --series tar --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  step "$repo" "stats" stats
  step "$repo" "ls one series" ls --series scale-7
  step "$repo" "forget --dry-run one series" forget --series scale-7 --keep-last 10 --dry-run
  step "$repo" "gc --dry-run" gc --dry-run
  "$binary" delete --purge --repo "$repo" "$id" > /dev/null 2>&1
  step "$repo" "gc (the tar purged)" gc
  step "$repo" "check" check
  step "$repo" "repair index" repair index
done
echo
column -t -s $'\t' "$results"
