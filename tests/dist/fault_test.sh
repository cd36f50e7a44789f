#!/usr/bin/env bash
# Faults in data-parallel training (test_dist_fault.c), timed from outside:
#   die:  rank 1 is killed at step 3 after rank 0 saved at step 2. mpirun must exit non-zero within 60 s,
#         and the checkpoint must load in a following single-process run.
#   hang: rank 1 sleeps at step 3. Rank 0 (timeout 3 s) must report FWP_ERR_DISTRIBUTED naming the
#         timeout after 2.5-10 s of waiting and abort the job: mpirun non-zero within 60 s.
# Usage: fault_test.sh MPIEXEC PROGRAM die|hang WORK_DIR
set -u
mpiexec=$1 program=$2 mode=$3 dir=$4
fail() { echo "dist fault test ($mode): FAILED: $*"; echo "---- output ----"; cat "$dir/mpirun.log"; exit 1; }

rm -rf "$dir" && mkdir -p "$dir" || exit 1
: >"$dir/mpirun.log"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
start=$(date +%s.%N)
# The outer limit only keeps a broken build from hanging here; the job must end well before it (a run
# stopped by it took over 60 s and fails below).
timeout -k 5 120 "$mpiexec" -np 2 --oversubscribe "$program" "$mode" "$dir" >"$dir/mpirun.log" 2>&1
rc=$?
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
echo "mpirun exit status $rc after ${elapsed} s"
[ "$rc" -ne 0 ] || fail "mpirun exited 0"
(($(echo "$elapsed < 60" | bc))) || fail "the job took ${elapsed} s (limit 60)"
grep -q "finished every step" "$dir/mpirun.log" && fail "a rank went on as if nothing had happened"

case $mode in
die)
  grep -q "rank 0 saved" "$dir/mpirun.log" || fail "rank 0 did not save the checkpoint"
  grep -q "rank 1: SIGKILL at step 3" "$dir/mpirun.log" || fail "rank 1 did not reach step 3"
  [ -f "$dir/step2.safetensors" ] || fail "no checkpoint file"
  # The checkpoint survives the crash: a single process loads it (no mpirun).
  "$program" load "$dir" >>"$dir/mpirun.log" 2>&1 || fail "the checkpoint of step 2 does not load"
  grep "fault-test: the checkpoint" "$dir/mpirun.log"
  ;;
hang)
  line=$(grep "fault-test: rank 0: step 3: status 13 (.*) after" "$dir/mpirun.log") ||
    fail "rank 0 did not report FWP_ERR_DISTRIBUTED at step 3"
  echo "$line"
  echo "$line" | grep -qiE "time ?out|timed out|within 3(\.0*)? s" || fail "the message does not name the timeout"
  waited=$(echo "$line" | sed -E 's/.*\) after ([0-9.]+) s: .*/\1/')
  (($(echo "$waited >= 2.5 && $waited <= 10" | bc))) || fail "rank 0 waited $waited s (timeout 3 s; want 2.5-10 s)"
  grep -q "fault-test: rank 0: then fwp_dist_sum: status 13 " "$dir/mpirun.log" ||
    fail "the handle was not broken after the timeout"
  grep -q "fwp_dist_abort returned" "$dir/mpirun.log" && fail "fwp_dist_abort returned (MPI)"
  ;;
*)
  fail "unknown mode"
  ;;
esac
echo "dist fault test ($mode): passed in ${elapsed} s"
rm -rf "$dir"
