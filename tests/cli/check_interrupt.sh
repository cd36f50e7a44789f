#!/usr/bin/env bash
# Ctrl-C during training (tools/train/interrupt.h): `fwp retrieval` stops
# between two steps, saves its checkpoint, exits with 130 (SIGINT) or 143
# (SIGTERM), and --resume then continues exactly: the resumed run ends with the
# same losses and evaluation log as a run never interrupted.
#   check_interrupt.sh <fwp> <work dir>
set -euo pipefail
fwp=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cd "$work"

fail() {
  echo "FAIL: $*" >&2
  for f in *.json *.err; do [[ -f $f ]] && { echo "--- $f"; cat "$f"; } >&2; done
  exit 1
}
# json_field FILE KEY: the value of KEY in the first JSON line of FILE (numbers and strings).
json_field() {
  head -n 1 "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
# wait_until CONDITION...: polls for up to 60 s.
wait_until() {
  for _ in $(seq 1 600); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  return 1
}
has_evaluation() { [[ -f $1 && $(wc -l < "$1") -ge 2 ]]; }
# stop_with SIGNAL PID: sends the signal and sets rc to the exit code (killing
# the program if it hangs). Not in $(...): only this shell can wait for the job.
stop_with() {
  kill "-$1" "$2"
  if ! wait_until bash -c "! kill -0 $2 2>/dev/null"; then
    kill -KILL "$2"
    fail "fwp did not stop within 60 s of SIG$1"
  fi
  rc=0
  wait "$2" || rc=$?
}

# Job control on: each background fwp gets its own process group, as from an
# interactive shell.
set -m
common=(--keys 6 --phi dpfp --rule delta --eval-every 20 --threads 1 --target-loss 0 --patience 1000000)

# 1. SIGINT with a checkpoint path: saved, exit 130, the step and the exact
#    resume command said on stderr, and that command resumes exactly.
"$fwp" retrieval "${common[@]}" --max-steps 100000000 --checkpoint run.safetensors --csv split.csv \
  --json >interrupted.json 2>interrupted.err &
pid=$!
wait_until has_evaluation split.csv || fail "no evaluation within 60 s"
stop_with INT "$pid"
[[ $rc == 130 ]] || fail "SIGINT gave exit code $rc, not 130"
[[ -f run.safetensors ]] || fail "no checkpoint after SIGINT"
[[ $(json_field interrupted.json stopped_by) == interrupted ]] || fail "stopped_by is not 'interrupted'"
steps=$(json_field interrupted.json steps)
[[ $steps =~ ^[0-9]+$ && $steps -ge 20 ]] || fail "implausible step count '$steps'"
echo "interrupted at step $steps"
notice=$(grep "stopped at step" interrupted.err) || fail "no line on stderr says where the run stopped"
expected="$fwp retrieval --resume run.safetensors --max-steps 100000000 --threads 1 --csv split.csv --json"
[[ $notice == *"stopped at step $steps by SIGINT; saved to run.safetensors; resume with: $expected" ]] ||
  fail "the notice does not give the step and the exact resume command: $notice"

# Resume with that command, its cap lowered to 47 steps past the interruption
# (not a multiple of --eval-every, so the cap's own evaluation is compared too),
# and train the same in one go.
cap=$((steps + 47))
resume=${notice#*resume with: }
eval "${resume/--max-steps 100000000/--max-steps $cap}" >resumed.json 2>resumed.err || fail "resuming failed"
# The checkpoint was saved at the interruption, not at the last evaluation before it.
grep -q "at step $steps from run.safetensors" resumed.err || fail "the checkpoint is not from step $steps"
"$fwp" retrieval "${common[@]}" --max-steps "$cap" --json --quiet --csv whole.csv >whole.json 2>whole.err ||
  fail "the uninterrupted run failed"
for key in final_eval_loss best_eval_loss steps evaluations stopped_by; do
  a=$(json_field whole.json "$key")
  b=$(json_field resumed.json "$key")
  [[ -n $a && $a == "$b" ]] || fail "$key: '$a' uninterrupted, '$b' after SIGINT and --resume"
done
[[ $(json_field resumed.json resumed) == true ]] || fail "the resumed run does not say resumed: true"
# The logs agree row by row except for the wall-clock column.
diff <(cut -d, -f1-4 whole.csv) <(cut -d, -f1-4 split.csv) >/dev/null || fail "evaluation logs differ"

# 2. SIGTERM during a sweep without a checkpoint path: exit 143, and the sweep
#    stops after the interrupted run (one JSON line, no sweep row for it).
"$fwp" retrieval --keys 4:8:2 --max-steps 100000000 --eval-every 20 --threads 1 --target-loss 0 \
  --patience 1000000 --csv sweep-evals.csv --sweep-csv sweep.csv --json --quiet >term.json 2>term.err &
pid=$!
wait_until has_evaluation sweep-evals.csv || fail "no evaluation within 60 s"
stop_with TERM "$pid"
[[ $rc == 143 ]] || fail "SIGTERM gave exit code $rc, not 143"
[[ $(wc -l <term.json) == 1 ]] || fail "the sweep went on after SIGTERM"
grep -q "stopped at step [0-9]* by SIGTERM; no checkpoint was written .*(the sweep's values of S after 4 were not run; the same command with --skip-done runs only those missing)" \
  term.err || fail "the notice does not say that no checkpoint was written, the sweep stopped and how to finish it: $(cat term.err)"
[[ $(json_field term.json stopped_by) == interrupted ]] || fail "stopped_by is not 'interrupted'"
[[ ! -f sweep.csv ]] || [[ $(wc -l <sweep.csv) -le 1 ]] || fail "an interrupted run has a sweep row"
ls ./*.safetensors* 2>/dev/null | grep -qv '^./run.safetensors$' && fail "a checkpoint was written without a path"
echo "PASS"
