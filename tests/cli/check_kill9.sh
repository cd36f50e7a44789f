#!/usr/bin/env bash
# Fault test (issue 10): `fwp retrieval --checkpoint` killed with SIGKILL at
# random moments, many times over. The program gets no chance to clean up, so
# this checks the save itself: after every kill the checkpoint at the path
# must be a whole file -- the last one known good or a newer one, never older,
# never torn -- that loads, and `--resume` must continue from it.
#
# Each trial: start (or resume) a run that evaluates and saves after every
# step (so most of its time is spent saving, and most kills land in a save),
# SIGKILL it after a random 20-320 ms, then
#   probe:    --resume FILE --max-steps 1 --json   (loads it; reports its step N)
#   continue: --resume FILE --max-steps N+2 --json (must train to N+2, exit 0)
# and require N >= the step of the last verified checkpoint. A kill inside a
# save leaves that save's temporary (<path>.tmp.<pid>.<n>); the next save to
# the path must remove it (io/atomic_file.h), so after every successful resume
# no temporary may be left, and none may accumulate over the trials.
#
#   check_kill9.sh <fwp> <work dir> [trials (default 50)]
# FWP_FAULT_SEED fixes the random kill times (printed at the start).
set -euo pipefail
fwp=$1
work=$2
trials=${3:-50}
rm -rf "$work"
mkdir -p "$work"
cd "$work"

seed=${FWP_FAULT_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$seed
echo "kill -9 fault test: $trials trials, seed $seed (FWP_FAULT_SEED=$seed reproduces the kill times)"

fail() {
  echo "FAIL (trial ${trial:-0}, seed $seed): $*" >&2
  for f in *.json *.err; do [[ -f $f ]] && { echo "--- $f"; cat "$f"; } >&2; done
  ls -la >&2
  exit 1
}
# json_field FILE KEY: the value of KEY in the first JSON line of FILE (numbers and strings).
json_field() {
  head -n 1 "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

ckpt=run.safetensors
count_temporaries() {
  local f n=0
  for f in "$ckpt".tmp.*; do [[ -e $f ]] && n=$((n + 1)); done
  echo "$n"
}
run_flags=(--threads 1 --quiet)
fresh_flags=(--keys 6 --eval-every 1 --eval-seqs 2 --batch 4 --target-loss 0 --patience 1000000
             --checkpoint "$ckpt")
last_good=0        # step of the last checkpoint that loaded and resumed
during_write=0     # kills that left a temporary: the kill landed inside a save
for trial in $(seq 1 "$trials"); do
  if [[ -f $ckpt ]]; then
    "$fwp" retrieval --resume "$ckpt" --max-steps 100000000 "${run_flags[@]}" >/dev/null 2>victim.err &
  else
    "$fwp" retrieval "${fresh_flags[@]}" --max-steps 100000000 "${run_flags[@]}" >/dev/null 2>victim.err &
  fi
  pid=$!
  sleep "0.$(printf '%03d' $(( 20 + RANDOM % 300 )))"
  kill -KILL "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" 2>/dev/null || rc=$?  # (no "Killed" notice from the shell)
  # 137 = killed; anything else means the run ended by itself before the kill.
  [[ $rc == 137 ]] || fail "the run exited with $rc before it was killed: $(cat victim.err)"

  # A kill inside a save leaves that save's temporary (<path>.tmp.<pid>.<n>):
  # it stays until the next save to the path, which must remove it.
  temporaries=$(count_temporaries)
  (( temporaries <= 1 )) || fail "$temporaries temporaries after the kill: stale ones accumulate"
  (( temporaries == 0 )) || during_write=$((during_write + 1))
  for f in *; do
    [[ $f == "$ckpt" || $f == "$ckpt".tmp.* || $f == *.err || $f == *.json ]] || fail "unexpected file '$f' after the kill"
  done

  if [[ ! -f $ckpt ]]; then
    (( last_good == 0 )) || fail "the checkpoint of step $last_good disappeared"
    continue  # killed before the first save finished: the next trial starts afresh
  fi
  "$fwp" retrieval --resume "$ckpt" --max-steps 1 --json "${run_flags[@]}" >probe.json 2>probe.err ||
    fail "the checkpoint left by the kill does not load: $(cat probe.err)"
  step=$(json_field probe.json steps)
  [[ $step =~ ^[0-9]+$ ]] || fail "no step count in the probe's output"
  (( step >= last_good )) || fail "the checkpoint went back from step $last_good to step $step"
  "$fwp" retrieval --resume "$ckpt" --max-steps $((step + 2)) --json "${run_flags[@]}" >continue.json \
    2>continue.err || fail "--resume from step $step failed: $(cat continue.err)"
  [[ $(json_field continue.json steps) == $((step + 2)) ]] || fail "--resume from step $step did not reach step $((step + 2))"
  [[ $(json_field continue.json resumed) == true ]] || fail "--resume did not resume"
  (( $(count_temporaries) == 0 )) || fail "a save left the temporary of the killed save behind: $(ls "$ckpt".tmp.*)"
  last_good=$((step + 2))
done

(( last_good > 0 )) || fail "no trial got as far as a checkpoint"
(( $(count_temporaries) <= 1 )) || fail "stale temporaries accumulated"
echo "kill -9 fault test: $trials kills, $during_write inside a save; last checkpoint at step $last_good"
# Most of a run's time is spent in its saves (an fsync each step), so most
# kills should land inside one; on a filesystem without real fsync (tmpfs) the
# saves are too short to hit reliably.
if [[ $(stat -f -c %T .) != tmpfs ]] && (( during_write * 10 < trials )); then
  fail "only $during_write of $trials kills landed inside a save; the test no longer exercises saves"
fi
