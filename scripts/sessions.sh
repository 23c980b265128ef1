#!/usr/bin/env bash
# Client-side chunking against the plain upload and a local put, on the kernel corpus, in
# one run: each mode into a fresh repository, the server (when there is one) on loopback.
#
#   scripts/sessions.sh [--runs N] [--keep]
#
# Modes:   local    stowage put --repo (no server, the reference speed)
#          session  stowage put --server (chunked here, only missing chunks sent)
#          whole    stowage put --server --whole (every byte sent, chunked by the server)
# Steps:   linux-6.1.tar, linux-6.12.tar, linux-6.12.tar again. Each step under
#          /usr/bin/time (wall seconds, MB/s), with the sealed bytes the backup added to
#          the repository (its stored_bytes); for the server modes the bytes the server
#          received (stowage_session_bytes_total / stowage_upload_bytes_total) and the
#          server's peak RSS; du -sm of each repository (index included) at the end.
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
corpus=$(bash "$root/../shared/bench/corpus.sh" | tail -1)
(cd "$root" && cargo build --release --quiet --bin stowage)
bin=$root/target/release/stowage
work=$(mktemp -d "${TMPDIR:-/tmp}/stowage-sessions.XXXXXX")
[ "$keep" = 1 ] || trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
export STOWAGE_PASSWORD=sessions
files=("$corpus/linux-6.1.tar" "$corpus/linux-6.12.tar" "$corpus/linux-6.12.tar")
steps=("6.1" "6.12" "6.12-again")
for f in "${files[@]}"; do cat "$f" > /dev/null; done

metric() { # metric BASE NAME
  curl -s "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}

printf '%-8s %-11s %8s %8s %12s %12s\n' mode step seconds MB/s bytes_sent added
for run in $(seq "$runs"); do
  # local
  repo=$work/local-$run
  "$bin" init --repo "$repo" > /dev/null 2>&1
  for i in 0 1 2; do
    size=$(stat -c %s "${files[$i]}")
    out=$( /usr/bin/time -f '%e' "$bin" put --repo "$repo" --json "${files[$i]}" 2>&1 )
    s=$(echo "$out" | tail -1)
    added=$(echo "$out" | grep -o '"stored_bytes":[0-9]*' | cut -d: -f2)
    printf '%-8s %-11s %8s %8.1f %12s %12s\n' local "${steps[$i]}" "$s" \
      "$(echo "$size / $s / 1000000" | bc -l)" "-" "$added"
  done
  echo "local repository: $(du -sm "$repo" | cut -f1) MB"
  for mode in session whole; do
    data=$work/$mode-$run
    port=$((18000 + RANDOM % 1000))
    /usr/bin/time -f '%M' -o "$work/server-rss" \
      "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" > "$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.2; done
    base=http://127.0.0.1:$port
    export STOWAGE_KEY=$(cat "$data/admin.key")
    counter=stowage_session_bytes_total
    extra=()
    if [ "$mode" = whole ]; then counter=stowage_upload_bytes_total; extra=(--whole); fi
    for i in 0 1 2; do
      size=$(stat -c %s "${files[$i]}")
      before=$(metric "$base" "$counter")
      out=$( /usr/bin/time -f '%e' "$bin" put --server "$base" "${extra[@]}" --json \
        --series kernel "${files[$i]}" 2>&1 )
      s=$(echo "$out" | tail -1)
      added=$(echo "$out" | grep -o '"stored_bytes":[0-9]*' | cut -d: -f2)
      after=$(metric "$base" "$counter")
      printf '%-8s %-11s %8s %8.1f %12s %12s\n' "$mode" "${steps[$i]}" "$s" \
        "$(echo "$size / $s / 1000000" | bc -l)" "$((after - before))" "$added"
    done
    pkill -TERM -P "$server"; wait "$server" || true
    echo "$mode repository: $(du -sm "$data/repo" | cut -f1) MB; server peak RSS $(( $(cat "$work/server-rss") / 1024 )) MiB"
  done
done
