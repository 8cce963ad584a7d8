#!/usr/bin/env bash
# Runs libFuzzer targets one after another, each for SECONDS, from the
# checked-in seeds (spec/fuzz/corpus/<target>/, read only) plus what earlier
# runs found (build/fuzz/corpus-<target>/, where new entries go).
#
#   spec/fuzz/run.sh SECONDS TARGET...      (targets: watch list kubeconfig exec luajson)
#
# A crash, leak, timeout or failed check stops with exit 1; the input is in
# build/fuzz/crashes-<target>/ (minimize it with -minimize_crash=1 and keep it
# in spec/fuzz/crashes/<target>/). The binaries come from `make fuzz`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:?usage: run.sh SECONDS TARGET...}
shift
cd "$root"

# The longest input per target: a few real responses' worth, so each run
# stays fast enough to explore. Watch inputs are framed six ways each.
max_len() {
  case $1 in
    watch) echo 16384 ;;
    list) echo 32768 ;;
    kubeconfig) echo 8192 ;;
    exec) echo 4096 ;;
    luajson) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

status=0
summary=()
for t in "$@"; do
  bin=build/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "run.sh: $bin is missing; run make fuzz" >&2; exit 1; }
  mkdir -p "build/fuzz/corpus-$t" "build/fuzz/crashes-$t"
  dict=()
  [ -f "spec/fuzz/$t.dict" ] && dict=(-dict="spec/fuzz/$t.dict")
  log=build/fuzz/$t.log
  echo "fuzz $t: ${secs}s, -max_len=$(max_len "$t"), log in $log"
  start=$SECONDS
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway allocation
  "$bin" "build/fuzz/corpus-$t" "spec/fuzz/corpus/$t" "${dict[@]}" \
    -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="build/fuzz/crashes-$t/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  line="$t: $((SECONDS - start))s, ${execs:-?} executions, coverage ${cov:-?} edges, corpus $(ls "build/fuzz/corpus-$t" | wc -l) found + $(ls "spec/fuzz/corpus/$t" | wc -l) seeds"
  if [ $rc -ne 0 ]; then
    line="$line: FAILED (exit $rc)"
    status=1
    grep -E -A30 '^==[0-9]+==ERROR|deadly signal|SUMMARY' "$log" | head -60 >&2
    ls -t "build/fuzz/crashes-$t" | head -3 | sed "s#^#  build/fuzz/crashes-$t/#" >&2
  fi
  summary+=("$line")
done
printf 'fuzz summary\n'
printf '  %s\n' "${summary[@]}"
exit $status
