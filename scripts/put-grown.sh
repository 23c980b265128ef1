#!/usr/bin/env bash
# `put` of one file into an empty repository and into a grown one, alternated, on a quiet
# machine (docs/PERFORMANCE.md, "Scale"): what the size of the repository costs an ingest.
#
#   scripts/put-grown.sh WORKDIR BINARY TAR CHUNKS BACKUPS ROUNDS
#
# Builds the grown repository once with `stowage bench scale --chunks CHUNKS --backups
# BACKUPS`, then ROUNDS times: `put TAR` into a new empty repository, and `put TAR` into
# the grown one followed by `delete --purge` and `gc` (untimed), so every round finds the
# grown repository as it was. Prints seconds and peak MiB of each timed put. A grown
# repository already in WORKDIR (from an earlier run) is used as it is, so building one
# of 10 M chunks (25 minutes) can happen apart from the quiet rounds.
#
# With VIA_SERVER=1 each timed put goes through a server instead (`put --server`, the
# client chunking and sending what the server lacks, as agents do), started on the
# repository before the put and stopped after it: the server's start (which opens and
# checks the index) is not timed, the ingest is.
set -euo pipefail
[ $# -eq 6 ] || { sed -n 2,13p "$0"; exit 2; }
work=$1 binary=$2 tar=$3 chunks=$4 backups=$5 rounds=$6
mkdir -p "$work"
export STOWAGE_PASSWORD=scale-bench
grown="$work/grown" empty="$work/empty"
if [ -s "$grown/config" ]; then
  echo "using the grown repository already in $grown"
else
  rm -rf "$grown"
  "$binary" init --repo "$grown" > /dev/null 2>&1
  /usr/bin/time -f "built in %e s, %M KiB" "$binary" bench scale --repo "$grown" \
    --chunks "$chunks" --backups "$backups" > /dev/null
fi
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time.out" "$binary" "$@" > /dev/null 2>&1
  read -r seconds kib < "$work/time.out"
  printf '%s\t%s s\t%s MiB\n' "$label" "$seconds" "$((kib / 1024))"
}
# timed_put LABEL REPO: `put TAR` into REPO, directly or through a server on it.
timed_put() {
  local label=$1 repo=$2
  if [ "${VIA_SERVER:-0}" != 1 ]; then
    timed "$label" put --repo "$repo" --series tar "$tar"
    return
  fi
  # A data directory per repository: a server mirrors its keys into the repository
  # and, started again on it, takes them back instead of writing a new admin key.
  local data="$repo.serve" port=$((18000 + RANDOM % 1000))
  /usr/bin/time -f "%M" -o "$work/server-rss" "$binary" serve --data-dir "$data" \
    --repo "$repo" --listen "127.0.0.1:$port" > "$work/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 600); do grep -q "listening on" "$work/server.log" && break; sleep 0.2; done
  STOWAGE_KEY=$(cat "$data/admin.key") timed "$label" put --server "http://127.0.0.1:$port" \
    --series tar "$tar"
  pkill -TERM -P "$server" 2>/dev/null || kill -TERM "$server"
  wait "$server" || true
  printf '%s\tserver peak %s MiB\n' "$label" "$(( $(cat "$work/server-rss") / 1024 ))"
}
for round in $(seq "$rounds"); do
  rm -rf "$empty" "$empty.serve"
  "$binary" init --repo "$empty" > /dev/null 2>&1
  timed_put "round $round: empty" "$empty"
  timed_put "round $round: grown" "$grown"
  id=$("$binary" ls --repo "$grown" --series tar --json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  "$binary" delete --purge --repo "$grown" "$id" > /dev/null 2>&1
  "$binary" gc --repo "$grown" > /dev/null 2>&1
done
rm -rf "$empty" "$empty.serve"
