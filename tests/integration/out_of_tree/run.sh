#!/bin/sh
# Installs Plexus from the build tree into a scratch prefix, builds the out-of-tree plugin in this
# directory against it with find_package(Plexus), and runs it on the installed daemons.
# Environment: PLEXUS_BUILD_DIR, PLEXUS_OOT_SOURCE, CMAKE_COMMAND (default: cmake).
set -eu
: "${PLEXUS_BUILD_DIR:?}" "${PLEXUS_OOT_SOURCE:?}"
CMAKE="${CMAKE_COMMAND:-cmake}"

work=$(mktemp -d "${TMPDIR:-/tmp}/plexus-oot-XXXXXX")
pids=""
cleanup() {
  status=$?
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $pids; do
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ $status -ne 0 ]; then
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "---- $f"; cat "$f"; }; done
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }

prefix="$work/prefix"
"$CMAKE" --install "$PLEXUS_BUILD_DIR" --prefix "$prefix" >"$work/install.log" 2>&1 \
  || fail "cmake --install failed"
CMAKE_PREFIX_PATH="$prefix" "$CMAKE" -S "$PLEXUS_OOT_SOURCE" -B "$work/build" \
  >"$work/configure.log" 2>&1 || fail "configuring the out-of-tree plugin failed"
"$CMAKE" --build "$work/build" >"$work/build.log" 2>&1 || fail "building the plugin failed"
[ -f "$work/build/libplexus_mylib.so" ] || fail "libplexus_mylib.so was not built"

bin="$prefix/bin"
sched_file="$work/scheduler.addr"
"$bin/plexus-scheduler" --address tcp://127.0.0.1:0 --scheduler-file "$sched_file" \
  --log-level warning >"$work/scheduler.log" 2>&1 &
pids="$!"
i=0
while [ ! -s "$sched_file" ]; do
  i=$((i + 1))
  [ $i -le 100 ] || fail "the scheduler did not write $sched_file within 10 s"
  sleep 0.1
done
address=$(head -n 1 "$sched_file")
"$bin/plexus-worker" "$address" --nthreads 1 --plugin-path "$work/build" --log-level warning \
  >"$work/worker.log" 2>&1 &
pids="$pids $!"

out=$(timeout 30 "$bin/plexus" submit --scheduler "$address" --timeout 20 mylib.square 7) \
  || fail "plexus submit mylib.square failed"
[ "$out" = "49" ] || fail "mylib.square 7 printed '$out', expected 49"
out=$(timeout 30 "$bin/plexus" submit --scheduler "$address" --timeout 20 mylib.greet '"ann"') \
  || fail "plexus submit mylib.greet failed"
[ "$out" = '"hello ann"' ] || fail "mylib.greet printed '$out', expected \"hello ann\""
echo "out-of-tree plugin: OK"
