#!/usr/bin/env bash
# Two or more builds side by side on the same data, alternated, for a before/after figure.
#
#   scripts/ab-sessions.sh stream RUNS BIN...   linux-6.12.tar: each BIN's local put into a
#                                               fresh repository three times, then
#                                               put --server three times (first, again, again)
#   scripts/ab-sessions.sh tree RUNS TREE BIN...  the directory TREE through a tree session
#                                               three times (first, unchanged, unchanged),
#                                               the files cache fresh per server
#
# Each BIN is a release build of stowage (e.g. one from `git worktree add` of the commit
# before). Every put runs under /usr/bin/time (wall seconds; a session's client CPU as
# user+system); each server is a fresh `stowage serve` on loopback, sharing the cores.
# Needs ../shared/bench/corpus.sh for the stream mode.
set -euo pipefail

mode=$1 runs=$2; shift 2
work=$(mktemp -d "${TMPDIR:-/tmp}/stowage-ab.XXXXXX")
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
export STOWAGE_PASSWORD=ab
case "$mode" in
  stream)
    root=$(cd "$(dirname "$0")/.." && pwd)
    source=$(bash "$root/../shared/bench/corpus.sh" | tail -1)/linux-6.12.tar
    cat "$source" > /dev/null ;;
  tree)
    source=$1; shift
    find "$source" -type f -print0 | xargs -0 cat > /dev/null ;;
  *) echo "mode is stream or tree" >&2; exit 2 ;;
esac

serve() { # serve BIN: starts a fresh server, sets base and STOWAGE_KEY
  rm -rf "$work/data" "$work/cache"
  local port=$((18000 + RANDOM % 1000))
  "$1" serve --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.2; done
  base=http://127.0.0.1:$port
  export STOWAGE_KEY=$(cat "$work/data/admin.key") STOWAGE_CACHE_DIR=$work/cache
}

timed() { { /usr/bin/time -f '%e cpu %U+%S' "$@" > /dev/null; } 2>&1 | tail -1; }

for _ in $(seq "$runs"); do
  for bin in "$@"; do
    name=$(basename "$bin")
    if [ "$mode" = stream ]; then
      rm -rf "$work/local"; "$bin" init --repo "$work/local" > /dev/null 2>&1
      line="$name local:"
      for _ in 1 2 3; do line="$line [$(timed "$bin" put --repo "$work/local" --json "$source")]"; done
      echo "$line"
    fi
    serve "$bin"
    line="$name session:"
    for _ in 1 2 3; do
      line="$line [$(timed "$bin" put --server "$base" --json --series ab "$source")]"
    done
    echo "$line"
    kill -TERM "$server"; wait "$server" || true
  done
done
