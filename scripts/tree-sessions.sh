#!/usr/bin/env bash
# Tree backups of the extracted linux-6.12 tree (86,629 files), in one run: a local put
# and put --server (a tree session) into fresh repositories, the server on loopback.
#
#   scripts/tree-sessions.sh [--runs N] [--keep]
#
# Steps:   first    the tree into an empty repository
#          again    the same tree unchanged (put --server: the files cache skips every file)
#          edited   after touching 1% of the files (every 100th, a line appended)
#          force    put --server --force: every file read again, nothing new stored
# Each step under /usr/bin/time (wall seconds, client peak RSS), with the bytes the
# server received (stowage_session_bytes_total) and the sealed bytes the backup added.
# Client and server share this machine's cores. Needs ../shared/bench/corpus.sh, cargo.
set -euo pipefail

runs=1
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
corpus=$(bash "$root/../shared/bench/corpus.sh" 2>/dev/null | tail -1)
(cd "$root" && cargo build --release --quiet --bin stowage)
bin=$root/target/release/stowage
work=$(mktemp -d "${TMPDIR:-/tmp}/stowage-trees.XXXXXX")
[ "$keep" = 1 ] || trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
export STOWAGE_PASSWORD=trees STOWAGE_CACHE_DIR=$work/cache
tar -xf "$corpus/linux-6.12.tar" -C "$work"
tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'linux*' | head -1)
echo "tree: $tree, $(find "$tree" -type f | wc -l) files, $(du -sm "$tree" | cut -f1) MB"
# Every file older than the files cache's one-second guard, and in the page cache.
sleep 2
find "$tree" -type f -print0 | xargs -0 cat > /dev/null

metric() { # metric BASE NAME
  curl -s "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
edit() { # appends a line to every 100th file
  find "$tree" -type f | sort | awk 'NR % 100 == 0' | while read -r f; do echo "// edited" >> "$f"; done
}
step() { # step MODE NAME ARGS...: one timed put, one line of the table
  local mode=$1 name=$2; shift 2
  local before=0 after=0
  [ "$mode" = session ] && before=$(metric "$base" stowage_session_bytes_total)
  out=$( /usr/bin/time -f '%e %M' "$bin" put --json --series tree "$@" 2>&1 )
  read -r s rss <<< "$(echo "$out" | tail -1)"
  added=$(echo "$out" | grep -o '"stored_bytes":[0-9]*' | cut -d: -f2)
  [ "$mode" = session ] && after=$(metric "$base" stowage_session_bytes_total)
  printf '%-8s %-7s %8s %9s %12s %12s\n' "$mode" "$name" "$s" "$((rss / 1024))" \
    "$((after - before))" "$added"
}

printf '%-8s %-7s %8s %9s %12s %12s\n' mode step seconds rss_MiB bytes_sent added
for run in $(seq "$runs"); do
  pristine=$work/pristine
  rm -rf "$pristine"; cp -a "$tree" "$pristine"
  repo=$work/local-$run
  "$bin" init --repo "$repo" > /dev/null 2>&1
  step local first --repo "$repo" "$tree"
  step local again --repo "$repo" "$tree"
  edit
  step local edited --repo "$repo" "$tree"
  echo "local repository: $(du -sm "$repo" | cut -f1) MB"
  rm -rf "$tree"; cp -a "$pristine" "$tree"; sleep 2

  data=$work/server-$run
  port=$((18000 + RANDOM % 1000))
  /usr/bin/time -f '%M' -o "$work/server-rss" \
    "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.2; done
  base=http://127.0.0.1:$port
  export STOWAGE_KEY=$(cat "$data/admin.key")
  rm -rf "$STOWAGE_CACHE_DIR"
  step session first --server "$base" "$tree"
  step session again --server "$base" "$tree"
  edit; sleep 2
  step session edited --server "$base" "$tree"
  step session force --server "$base" --force "$tree"
  pkill -TERM -P "$server"; wait "$server" || true
  echo "server repository: $(du -sm "$data/repo" | cut -f1) MB; server peak RSS $(( $(cat "$work/server-rss") / 1024 )) MiB"
  rm -rf "$tree"; mv "$pristine" "$tree"
done
