#!/usr/bin/env bash
# Ingest and restore through S3 beside a local repository, in one run (docs/PERFORMANCE.md,
# "S3"): `put TAR` and `get` of it back (to /dev/null), into a local directory and into
# the S3-compatible test server (`examples/s3_server.rs`: s3s-fs on loopback, objects as
# files) under several multipart settings, each answer of the server delayed by each
# DELAY given (milliseconds, to stand for a network's round trip).
#
#   scripts/s3-bench.sh WORKDIR BINARY S3_SERVER TAR ROUNDS DELAY_MS... 
#
# S3_SERVER is the example's binary (cargo build --release --example s3_server). The
# settings tried are SETTINGS (default below): "PART_MIB:PARTS_IN_FLIGHT:PACK_MIB" each.
# Prints one line per step: configuration, seconds, MB/s, peak MiB.
set -euo pipefail
[ $# -ge 6 ] || { sed -n 2,12p "$0"; exit 2; }
work=$1 binary=$2 server=$3 tar=$4 rounds=$5
shift 5
delays=("$@")
settings=${SETTINGS:-"8:4:32 8:1:32 8:8:32 16:4:32 8:4:64 16:8:64"}
mkdir -p "$work"
export STOWAGE_PASSWORD=s3-bench
bytes=$(stat -c %s "$tar")
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" > /dev/null 2> "$work/stderr" \
    || { cat "$work/stderr" >&2; exit 1; }
  read -r seconds kib < "$work/time.out"
  awk -v l="$label" -v s="$seconds" -v k="$kib" -v b="$bytes" \
    'BEGIN { printf "%-34s %7.2f s %8.1f MB/s %6d MiB\n", l, s, b / s / 1e6, k / 1024 }'
}
# One ingest and one restore into the repository $1, extra flags after it.
round_trip() {
  local label=$1 repo=$2; shift 2
  "$binary" init --repo "$repo" --state-dir "$work/state" "$@" > /dev/null 2> "$work/stderr" \
    || { cat "$work/stderr" >&2; exit 1; }
  timed "$label put" "$binary" put --repo "$repo" --state-dir "$work/state" --series tar "$tar"
  local id
  id=$("$binary" ls --repo "$repo" --state-dir "$work/state" --json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  timed "$label get" "$binary" get --repo "$repo" --state-dir "$work/state" "$id" -o /dev/null
}
for round in $(seq "$rounds"); do
  echo "round $round"
  rm -rf "$work/local" "$work/state"
  round_trip "local" "$work/local"
  rm -rf "$work/local" "$work/state"
  for delay in "${delays[@]}"; do
    coproc S3 { "$server" bench "$delay"; }
    env_lines=()
    while read -r line <&"${S3[0]}" && [ "$line" != ready ]; do env_lines+=("$line"); done
    for setting in $settings; do
      IFS=: read -r part parts pack <<< "$setting"
      prefix="s3://bench/d$delay-p$part-n$parts-k$pack-r$round"
      rm -rf "$work/state"
      ( export "${env_lines[@]}" STOWAGE_S3_PART_SIZE=$((part << 20)) \
          STOWAGE_S3_CONCURRENT_PARTS="$parts"
        round_trip "s3 ${delay}ms part ${part}M x$parts pack ${pack}M" "$prefix" \
          --pack-size $((pack << 20)) )
    done
    exec {S3[1]}>&-
    wait "$S3_PID" 2>/dev/null || true
  done
done
rm -rf "$work/state"
