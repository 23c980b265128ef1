#!/usr/bin/env bash
# Throughput by cores (docs/PERFORMANCE.md, "Scale"): the engine's steps on one file,
# pinned with `taskset` to each CPU list given, alternated over ROUNDS rounds, with the
# scaling efficiency against the first list (throughput ratio / core ratio).
#
#   scripts/cores.sh WORKDIR BINARY FILE ROUNDS CPUS...      e.g. ... 3 0 0,1
#
# Steps: `put FILE` into an empty local repository, `get` of it to /dev/null, `check
# --read-data`, and the same `put` again (every chunk known). Prints, per CPU list, the
# median seconds and MB/s of each step, then each list's efficiency.
set -euo pipefail
[ $# -ge 5 ] || { sed -n 2,10p "$0"; exit 2; }
work=$1 binary=$2 file=$3 rounds=$4
shift 4
cpu_lists=("$@")
mkdir -p "$work"
export STOWAGE_PASSWORD=cores-bench
bytes=$(stat -c %s "$file")
results="$work/results.tsv"
: > "$results"
steps=("put" "get" "check --read-data" "put again")
for round in $(seq "$rounds"); do
  for cpus in "${cpu_lists[@]}"; do
    repo="$work/repo"
    rm -rf "$repo"
    "$binary" init --repo "$repo" > /dev/null 2>&1
    step() {
      local label=$1; shift
      taskset -c "$cpus" /usr/bin/time -f "%e" -o "$work/time.out" "$binary" "$@" \
        > /dev/null 2> "$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
      printf '%s\t%s\t%s\n' "$cpus" "$label" "$(cat "$work/time.out")" >> "$results"
    }
    step "put" put --repo "$repo" --series f "$file"
    id=$("$binary" ls --repo "$repo" --json 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
    step "get" get --repo "$repo" "$id" -o /dev/null
    step "check --read-data" check --repo "$repo" --read-data
    step "put again" put --repo "$repo" --series f "$file"
  done
done
rm -rf "$work/repo"
python3 - "$results" "$bytes" "${cpu_lists[@]}" <<'PY'
import statistics, sys
path, size, lists = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
times = {}
for line in open(path):
    cpus, step, seconds = line.rstrip("\n").split("\t")
    times.setdefault((cpus, step), []).append(float(seconds))
steps = ["put", "get", "check --read-data", "put again"]
def cores(cpus):
    n = 0
    for part in cpus.split(","):
        a, _, b = part.partition("-")
        n += int(b or a) - int(a) + 1
    return n
print("| step | " + " | ".join(f"{cores(c)} core(s) ({c})" for c in lists) + " |")
print("|---|" + "---|" * len(lists))
for step in steps:
    base = statistics.median(times[(lists[0], step)])
    cells = []
    for c in lists:
        t = statistics.median(times[(c, step)])
        cell = f"{t:.2f} s, {size / t / 1e6:.0f} MB/s"
        if c != lists[0]:
            efficiency = (base / t) / (cores(c) / cores(lists[0]))
            cell += f", {efficiency:.0%}"
        cells.append(cell)
    print(f"| `{step}` | " + " | ".join(cells) + " |")
PY
