#!/usr/bin/env bash
# Runs the informer specs under valgrind memcheck against the control plane in
# $KINFORMER_CLUSTER_DIR (make test-valgrind starts one with spec/with_cluster.sh):
# no invalid reads or writes, no use of uninitialised values, and no block
# definitely or indirectly lost. Only third-party noise is suppressed, in
# spec/valgrind/kinformer.supp, each entry with its reason.
#
#   spec/valgrind/run.sh [SPEC...]   (default: informer_spec.lua, fault*_spec.lua, robustness*_spec.lua,
#                                     close_spec.lua, index_spec.lua, auth_spec.lua, connections_spec.lua)
#
# busted is started without --lua, so it does not re-execute itself: the
# interpreter valgrind starts is the one that runs the specs, and children
# (kubectl, the API server restarts, exec plugins, sleep) run natively
# (--trace-children=no), which keeps the control plane out of valgrind.
# The specs run at KINFORMER_SPEC_SCALE=small (valgrind is 20-50x slower).
# Tests tagged #novalgrind cannot pass under valgrind whatever our code does
# (each says why) and are skipped.
# Extra valgrind flags: $VALGRIND_OPTS (e.g. --track-origins=yes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
export KINFORMER_CLUSTER_DIR=${KINFORMER_CLUSTER_DIR:-$root/.cluster}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/lua/?.so;;"
export KINFORMER_SPEC_SCALE=${KINFORMER_SPEC_SCALE:-small}
unset KUBECONFIG KUBERNETES_SERVICE_HOST KUBERNETES_SERVICE_PORT

# The informer (churn, clear, 410s, restarts), the fault proxy's faults, the
# process faults and misbehaving callbacks (stop, clear, close, garbage
# collection from inside callbacks), closing informers and watches, by_index
# under concurrent writes, the exec plugins (run off the I/O thread, a 5 s
# refresh), and dead HTTP/2 connections (45 s of timers: waiting costs valgrind
# nothing), and the controllers (request threads, coroutines, the work
# queue), whichever of them exist. About 9 minutes on two cores.
if [ $# -eq 0 ]; then
  set -- spec/lua/informer_spec.lua
  for f in spec/lua/fault*_spec.lua spec/lua/robustness*_spec.lua spec/lua/close_spec.lua spec/lua/index_spec.lua \
           spec/lua/auth_spec.lua spec/lua/connections_spec.lua spec/lua/controller_spec.lua; do
    [ -e "$f" ] && set -- "$@" "$f"
  done
fi

logdir=$root/build/valgrind
mkdir -p "$logdir"
rm -f "$logdir"/memcheck.*.log
start=$SECONDS
echo "test-valgrind: $* (scale $KINFORMER_SPEC_SCALE), logs in $logdir"
rc=0
# --keep-debuginfo: lua_close() dlcloses core.so before the leak check; without
# it the stacks of our own frames would print as ???.
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --trace-children=no \
  --keep-debuginfo=yes --num-callers=40 --suppressions="$here/kinformer.supp" \
  --log-file="$logdir/memcheck.%p.log" \
  lua5.4 /usr/bin/busted --ignore-lua --exclude-tags=novalgrind "$@" &
pid=$!
wait $pid || rc=$?

# A child forked by the interpreter is under valgrind until it execs, and
# writes its own log: count the errors of all of them.
errors=0
for f in "$logdir"/memcheck.*.log; do
  n=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -1)
  errors=$((errors + ${n:-0}))
  if [ "${n:-0}" != 0 ] && [ "$f" != "$logdir/memcheck.$pid.log" ]; then echo "  errors in $f" >&2; fi
done
log=$logdir/memcheck.$pid.log
grep -E 'definitely lost:|indirectly lost:|suppressed:|ERROR SUMMARY' "$log" | sed 's/^==[0-9]*== */  /' || true
echo "test-valgrind: $((SECONDS - start))s, $errors memcheck errors, busted exit $rc"
if [ "$errors" != 0 ] || [ "$rc" = 99 ]; then
  # the first reports in full: what, and where
  awk '/^==[0-9]+== (Invalid|Mismatched|Syscall param|.*uninitialised|.*are (definitely|indirectly) lost|.*overlap)/{p=1}
       p{print} p && /^==[0-9]+== $/{p=0; if (++n >= 10) exit}' "$log" >&2
  echo "test-valgrind: memcheck found errors; the full report is $log" >&2
  exit 1
fi
exit $rc
