#!/usr/bin/env bash
# A sweep can be resumed (issue 10): `fwp retrieval --keys A:B:C --sweep-csv FILE
# --skip-done` runs only the values of S without a finished row in FILE, and
# leaves the rows already there as they are; a raised --max-steps makes runs
# stopped by the old cap unfinished again. --skip-done needs --sweep-csv.
#
#   check_sweep_resume.sh <fwp> <work dir>
set -euo pipefail
fwp=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cd "$work"

fail() {
  echo "FAIL: $*" >&2
  for f in *.json *.err sweep.csv; do [[ -f $f ]] && { echo "--- $f"; cat "$f"; } >&2; done
  exit 1
}
base=(retrieval --phi elu --eval-every 10 --threads 1 --target-loss 0 --patience 100 --sweep-csv sweep.csv --json)

# The "interrupted" sweep: only S = 4 and 6 of 4:8:2 finished.
"$fwp" "${base[@]}" --keys 4:6:2 --max-steps 20 --quiet >first.json 2>first.err || fail "first sweep failed"
(( $(wc -l <first.json) == 2 )) || fail "the first sweep did not run 2 values of S"
cp sweep.csv before.csv

# Rerun the whole sweep with --skip-done: only S = 8 runs.
"$fwp" "${base[@]}" --keys 4:8:2 --max-steps 20 --skip-done >second.json 2>second.err || fail "second sweep failed"
(( $(wc -l <second.json) == 1 )) || fail "--skip-done ran $(wc -l <second.json) runs instead of 1"
grep -q '"keys":8' second.json || fail "--skip-done did not run S = 8"
grep -q 'S = 4, 6 already in sweep.csv' second.err || fail "--skip-done did not say which S it left out"
(( $(wc -l <sweep.csv) == 4 )) || fail "the sweep table does not have a header and 3 rows"
while IFS= read -r line; do
  grep -qxF -- "$line" sweep.csv || fail "the row '$line' of a finished run changed"
done <before.csv

# Everything finished: nothing runs.
"$fwp" "${base[@]}" --keys 4:8:2 --max-steps 20 --skip-done >third.json 2>third.err || fail "third sweep failed"
[[ ! -s third.json ]] || fail "a sweep with every S finished ran again"

# A raised cap: the runs stopped by the old one are not finished.
"$fwp" "${base[@]}" --keys 4:8:2 --max-steps 30 --skip-done --quiet >fourth.json 2>fourth.err || fail "fourth sweep failed"
(( $(wc -l <fourth.json) == 3 )) || fail "a raised --max-steps did not rerun the capped runs"
grep -q '"steps":30' fourth.json || fail "the rerun runs did not train to the new cap"

# --skip-done without a table is a usage error.
rc=0
"$fwp" retrieval --keys 4 --max-steps 2 --skip-done --quiet >/dev/null 2>usage.err || rc=$?
(( rc == 2 )) || fail "--skip-done without --sweep-csv exited $rc, not 2"
grep -q -- '--skip-done needs --sweep-csv' usage.err || fail "no clear message for --skip-done without --sweep-csv"
echo "sweep resume: --skip-done ran only the missing values of S and kept the finished rows"
