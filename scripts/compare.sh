#!/usr/bin/env bash
# Compares stowage with restic and BorgBackup (and rustic, when installed) on the Linux
# kernel corpus, every tool in one run, each backing up to a fresh local repository with
# its inputs in the page cache. Prints a table of medians with ratios.
#
#   scripts/compare.sh [--runs N] [--trees | --trees-only] [--files-cache] [--keep]
#
#   --runs N        repetitions per tool; medians are reported (default 3, or $RUNS)
#   --trees         also back up and restore the extracted linux-6.12 tree (86,629 files)
#   --trees-only    only the tree steps
#   --files-cache   let restic/borg skip unchanged files by metadata on the re-ingest
#                   (their default); without it they re-read and re-chunk every byte,
#                   like stowage, which has no files cache
#   --keep          keep the work directory (repositories, restored files)
#
# Restored trees are kept until the end: on an ext4 without a journal, the inode allocator
# scans past inodes deleted in the last minutes (RECENTCY_MIN/DIRTY, 60 to 300 s), which
# made a restore of 86,629 files right after deleting another take 25 to 50 s of kernel
# time instead of 7, whichever tool ran it.
#
# Steps per tool and run: init; back up linux-6.1.tar; linux-6.12.tar; linux-6.12.tar
# again (unchanged); restore 6.12 to a file and cmp it; du -sm of the repository. Each
# step runs under /usr/bin/time for wall seconds and peak RSS.
# Needs: ../shared/bench/corpus.sh, apt-get (root) when restic/borg are missing, cargo.
set -euo pipefail

runs=${RUNS:-3}
trees=0
trees_only=0
files_cache=0
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift ;;
    --runs=*) runs=${1#--runs=} ;;
    --trees) trees=1 ;;
    --trees-only) trees=1; trees_only=1 ;;
    --files-cache) files_cache=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number" >&2; exit 2; }

repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"

corpus_args=()
[ "$trees" = 1 ] && corpus_args+=(--trees)
corpus=$(../shared/bench/corpus.sh "${corpus_args[@]}" | tail -n 1)
tar61=$corpus/linux-6.1.tar
tar612=$corpus/linux-6.12.tar
tree612=$corpus/linux-6.12

missing=()
command -v restic >/dev/null || missing+=(restic)
command -v borg >/dev/null || missing+=(borgbackup)
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null; }
fi
[ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y time >/dev/null

tools=(stowage restic borg)
command -v rustic >/dev/null && tools+=(rustic)

cargo build --release --quiet
stowage_bin=$repo_root/target/release/stowage

work=$(mktemp -d "${TMPDIR:-/tmp}/stowage-compare.XXXXXX")
results=$work/results
mkdir -p "$results"
cleanup() { [ "$keep" = 1 ] && echo "kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT

export STOWAGE_PASSWORD=compare RESTIC_PASSWORD=compare RUSTIC_PASSWORD=compare
export BORG_PASSPHRASE=compare BORG_BASE_DIR=$work/borg-base
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export XDG_CACHE_HOME=$work/cache

restic_force=(--force)
borg_cache=(--files-cache=disabled)
if [ "$files_cache" = 1 ]; then restic_force=(); borg_cache=(); fi

# Runs a command under /usr/bin/time; appends "seconds rss_kib" to $results/<tool>.<step>.
timed() {
  local tool=$1 step=$2; shift 2
  local t=$work/time.out
  if ! /usr/bin/time -f '%e %M' -o "$t" "$@" >"$work/cmd.out" 2>"$work/cmd.err"; then
    echo "$tool $step failed: $*" >&2
    tail -n 20 "$work/cmd.err" >&2
    exit 1
  fi
  tail -n 1 "$t" >>"$results/$tool.$step"
}

warm() { cat "$@" >/dev/null; }
warm_tree() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }

# Creates an empty repository of one tool at a path.
init_repo() {
  case $1 in
    stowage) "$stowage_bin" init --repo "$2" 2>/dev/null ;;
    restic) restic init --repository-version 2 -r "$2" -q >/dev/null ;;
    rustic) rustic init -r "$2" >/dev/null 2>&1 ;;
    borg) borg init -e repokey "$2" >/dev/null 2>&1 ;;
  esac
}

# One run of every step for one tool, in a fresh repository.
run_tool() {
  local tool=$1 run=$2 r=$work/repo-$1 out=$work/restored-$1
  rm -rf "$r" "$out" "$work/cache" "$BORG_BASE_DIR"
  mkdir -p "$out"
  if [ "$trees_only" = 0 ]; then run_streams "$tool" "$r" "$out"; fi
  if [ "$trees" = 1 ]; then run_trees "$tool" "$run"; fi
  rm -rf "$r" "$out"
}

# The stream steps: two tars, the second again, a restore, the repository size.
run_streams() {
  local tool=$1 r=$2 out=$3
  init_repo "$tool" "$r"
  local step file
  for step in ingest61 ingest612 reingest612; do
    case $step in ingest61) file=$tar61 ;; *) file=$tar612 ;; esac
    warm "$file"
    case $tool in
      stowage) timed "$tool" "$step" "$stowage_bin" put --repo "$r" "$file" ;;
      restic)
        local extra=()
        [ "$step" = reingest612 ] && extra=("${restic_force[@]}")
        timed "$tool" "$step" restic -r "$r" backup -q "${extra[@]}" "$file" ;;
      rustic)
        local extra=()
        [ "$step" = reingest612 ] && [ "$files_cache" = 0 ] && extra=(--force)
        timed "$tool" "$step" rustic -r "$r" backup "${extra[@]}" "$file" ;;
      borg)
        timed "$tool" "$step" borg create "${borg_cache[@]}" --compression zstd,3 "$r::$step" "$file" ;;
    esac
    [ "$tool" = stowage ] && tail -n 1 "$work/cmd.out" >"$work/stowage.last-id"
  done
  local restored=$out/linux-6.12.tar
  case $tool in
    stowage) timed "$tool" restore612 "$stowage_bin" get --repo "$r" "$(cat "$work/stowage.last-id")" -o "$restored" ;;
    restic) timed "$tool" restore612 sh -c 'restic -r "$1" dump -q latest "$2" >"$3"' - "$r" "$tar612" "$restored" ;;
    rustic) timed "$tool" restore612 sh -c 'rustic -r "$1" dump "latest:$2" >"$3"' - "$r" "$tar612" "$restored" ;;
    borg) timed "$tool" restore612 sh -c 'borg extract --stdout "$1::reingest612" >"$2"' - "$r" "$restored" ;;
  esac
  cmp "$tar612" "$restored" || { echo "$tool restored a different linux-6.12.tar" >&2; exit 1; }
  rm -f "$restored"
  du -sm "$r" | cut -f1 >>"$results/$tool.size"
}

# The tree steps: back up the extracted tree, restore it into a new directory (kept).
run_trees() {
  local tool=$1 tr=$work/tree-repo-$1 tout=$work/tree-restored-$1-$2
  rm -rf "$tr" "$work/cache" "$BORG_BASE_DIR"
  mkdir -p "$tout"
  init_repo "$tool" "$tr"
  warm_tree "$tree612"
  case $tool in
    stowage)
      timed "$tool" treebackup "$stowage_bin" put --repo "$tr" "$tree612"
      timed "$tool" treerestore "$stowage_bin" restore --repo "$tr" "$(tail -n 1 "$work/cmd.out")" --target "$tout/linux-6.12" ;;
    restic)
      timed "$tool" treebackup restic -r "$tr" backup -q "$tree612"
      timed "$tool" treerestore restic -r "$tr" restore -q latest --target "$tout" ;;
    rustic)
      timed "$tool" treebackup rustic -r "$tr" backup "$tree612"
      timed "$tool" treerestore rustic -r "$tr" restore latest "$tout" ;;
    borg)
      timed "$tool" treebackup borg create --compression zstd,3 "$tr::tree" "$tree612"
      timed "$tool" treerestore sh -c 'cd "$2" && borg extract "$1::tree"' - "$tr" "$tout" ;;
  esac
  local want got
  want=$(find "$tree612" -type f | wc -l)
  got=$(find "$tout" -type f | wc -l)
  [ "$want" = "$got" ] || { echo "$tool restored $got files of $want" >&2; exit 1; }
  rm -rf "$tr"
}

for ((i = 1; i <= runs; i++)); do
  for tool in "${tools[@]}"; do
    echo "run $i/$runs: $tool" >&2
    run_tool "$tool" "$i"
  done
done

# Median of column $2 (1: seconds, 2: RSS KiB, or the single value) of a results file.
median() {
  awk -v c="$2" '{print $c}' "$results/$1" | sort -g | awk '{v[NR]=$1} END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

mb() { stat -c %s "$1" | awk '{printf "%.3f", $1 / 1e6}'; }
mb61=$(mb "$tar61")
mb612=$(mb "$tar612")

# Rows: label, kind (speed: MB/s from seconds; secs; rss; size), step, MB for speed rows.
rows=()
[ "$trees_only" = 1 ] || rows=(
  "first ingest 6.1 (MB/s)|speed|ingest61|$mb61"
  "6.12 after 6.1 (MB/s)|speed|ingest612|$mb612"
  "re-ingest unchanged 6.12 (MB/s)|speed|reingest612|$mb612"
  "restore 6.12 to a file (MB/s)|speed|restore612|$mb612"
  "peak RSS, first ingest (MiB)|rss|ingest61|"
  "peak RSS, 6.12 after 6.1 (MiB)|rss|ingest612|"
  "peak RSS, re-ingest (MiB)|rss|reingest612|"
  "peak RSS, restore (MiB)|rss|restore612|"
  "repository size after both (MiB)|size|size|"
)
if [ "$trees" = 1 ]; then
  rows+=(
    "tree 6.12 backup (s)|secs|treebackup|"
    "tree 6.12 restore (s)|secs|treerestore|"
    "peak RSS, tree backup (MiB)|rss|treebackup|"
    "peak RSS, tree restore (MiB)|rss|treerestore|"
  )
fi

value() { # tool kind step mb
  case $2 in
    speed) awk -v s="$(median "$1.$3" 1)" -v m="$4" 'BEGIN {printf "%.1f", m / s}' ;;
    secs) awk -v s="$(median "$1.$3" 1)" 'BEGIN {printf "%.2f", s}' ;;
    rss) awk -v k="$(median "$1.$3" 2)" 'BEGIN {printf "%.0f", k / 1024}' ;;
    size) awk -v v="$(median "$1.size" 1)" 'BEGIN {printf "%.0f", v}' ;;
  esac
}

peers=("${tools[@]:1}")
echo
echo "Medians of $runs run(s); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
echo "Ratios: speed = stowage / peer (>1: stowage faster); seconds, RSS, size = stowage / peer (<1: stowage smaller)."
[ "$files_cache" = 1 ] && echo "restic/borg used their files caches on the re-ingest." \
  || echo "re-ingest: restic --force, borg --files-cache=disabled (every byte re-read, as stowage does)."
header="| step | stowage |"
sep="|---|---:|"
for p in "${peers[@]}"; do header+=" $p |"; sep+="---:|"; done
for p in "${peers[@]}"; do header+=" stowage/$p |"; sep+="---:|"; done
echo "$header"
echo "$sep"
for row in "${rows[@]}"; do
  IFS='|' read -r label kind step mbytes <<<"$row"
  line="| $label |"
  declare -A val=()
  for t in "${tools[@]}"; do
    val[$t]=$(value "$t" "$kind" "$step" "$mbytes")
    line+=" ${val[$t]} |"
  done
  for p in "${peers[@]}"; do
    line+=" $(awk -v a="${val[stowage]}" -v b="${val[$p]}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}') |"
  done
  echo "$line"
  unset val
done
