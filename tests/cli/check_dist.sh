#!/usr/bin/env bash
# Data-parallel training from the command line (--dist mpi) against one process:
#   - lm (sum and delta rule), retrieval and (with SentencePiece) mt: two processes (mt also
#     four, so that parts of a batch are empty)
#     sharing a global batch reach the final eval loss of one process with that
#     batch, within 1e-4 relative (dropout 0);
#   - --dist with one process gives the very losses of a run without it;
#   - lm: a 2-process run of 10 steps equals 5 steps + --resume 5 steps (also with
#     --carry, whose carried fast weights are gathered into the checkpoint), and one
#     process resumes a 2-process checkpoint (re-sharding) to the same loss;
#   - only rank 0 prints; --json says dist and world_size; a batch the processes
#     cannot share is a usage error naming the rank.
#   check_dist.sh <fwp> <mpiexec> <workdir> [mt]
set -euo pipefail
fwp=$1
mpiexec=$2
work=$3
with_mt=${4:-}
rm -rf "$work"
mkdir -p "$work"
cd "$work"

fail() { echo "check_dist: $*" >&2; exit 1; }
group() { "$mpiexec" -np 2 --oversubscribe "$@"; }
one() { "$mpiexec" -np 1 --oversubscribe "$@"; }
# field JSON KEY: a top-level number or string of one --json line.
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1" | head -n 1; }
# close A B: |A - B| <= 1e-4 |A|
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(a != "" && d <= 1e-4 * m) }'; }
expect_close() {  # what single group
  local a b
  a=$(field "$2" final_eval_loss)
  b=$(field "$3" final_eval_loss)
  close "$a" "$b" || fail "$1: final eval loss $a with one process, $b with the group"
  echo "$1: $a (one process) vs $b (the group)"
}
expect_same() {  # what first second
  local a b
  a=$(field "$2" final_eval_loss)
  b=$(field "$3" final_eval_loss)
  [[ -n "$a" && "$a" == "$b" ]] || fail "$1: final eval loss $a vs $b (must be identical)"
  echo "$1: $a"
}
expect_lines() {  # what output count: one --json line from the whole group
  local n
  n=$(grep -c '^{' <<<"$2" || true)
  [[ "$n" == "$3" ]] || fail "$1: $n JSON lines on stdout, expected $3 (only rank 0 prints): $2"
}

# ---- language model ---------------------------------------------------------------
for i in $(seq 1 60); do
  echo "the lord is my shepherd ; i shall not want ."
  echo "he maketh me to lie down in green pastures ."
  echo
done >train.txt
printf 'the lord is my shepherd ; i shall not want .\nhe leadeth me beside the still waters .\n' >valid.txt
"$fwp" lm prepare --train train.txt --valid valid.txt --out data --quiet

for rule in sum delta; do
  tiny=(--data data --preset cpu-small --phi elu --rule "$rule" --layers 1 --d-model 16 --heads 2 --d-head 8
        --d-ff 32 --length 8 --batch 4 --dropout 0 --eval-every 5 --seed 3 --threads 1 --lr 0.01 --warmup 5)
  single=$("$fwp" lm train "${tiny[@]}" --max-steps 10 --json --quiet)
  pair=$(group "$fwp" lm train "${tiny[@]}" --max-steps 10 --json --quiet --dist mpi)
  expect_lines "lm $rule" "$pair" 1
  expect_close "lm $rule" "$single" "$pair"
  [[ $(field "$pair" world_size) == 2 && $(field "$pair" dist) == mpi ]] || fail "lm $rule: --json lacks dist/world_size: $pair"
  [[ $(field "$single" world_size) == 1 && $(field "$single" dist) == none ]] || fail "lm $rule: one process: $single"
  solo=$(one "$fwp" lm train "${tiny[@]}" --max-steps 10 --json --quiet --dist mpi)
  expect_same "lm $rule, --dist with one process" "$single" "$solo"
done
# Without a timeout MPI's blocking all-reduce sums the gradients: the same run.
blocking=$(group "$fwp" lm train "${tiny[@]}" --max-steps 10 --json --quiet --dist mpi --dist-timeout 0)
expect_close "lm, --dist-timeout 0" "$single" "$blocking"

tiny=(--data data --preset cpu-small --phi elu --rule delta --layers 1 --d-model 16 --heads 2 --d-head 8
      --d-ff 32 --length 8 --batch 4 --dropout 0 --eval-every 5 --seed 3 --threads 1 --lr 0.01 --warmup 5)
# Resuming: 10 steps == 5 + 5, with two processes; one process continues their checkpoint.
whole=$(group "$fwp" lm train "${tiny[@]}" --max-steps 10 --json --quiet --dist mpi)
group "$fwp" lm train "${tiny[@]}" --max-steps 5 --decay-steps 10 --quiet --dist mpi --checkpoint run.ckpt
grep -aq 'world_size\\":2' run.ckpt || fail "the checkpoint does not record world_size 2"
cp run.ckpt run1.ckpt
resumed=$(group "$fwp" lm train --resume run.ckpt --max-steps 10 --json --quiet --dist mpi --threads 1)
expect_same "lm resume (2 processes)" "$whole" "$resumed"
[[ $(field "$resumed" resumed) == true ]] || fail "lm resume: not marked resumed: $resumed"
alone=$("$fwp" lm train --resume run1.ckpt --max-steps 10 --json --quiet --threads 1)
expect_close "lm: one process resumes a 2-process checkpoint" "$alone" "$whole"

# --carry: the carried fast weights are per-process rows, gathered into the checkpoint.
carried_single=$("$fwp" lm train "${tiny[@]}" --carry --max-steps 10 --json --quiet)
carried_whole=$(group "$fwp" lm train "${tiny[@]}" --carry --max-steps 10 --json --quiet --dist mpi)
expect_close "lm --carry" "$carried_single" "$carried_whole"
group "$fwp" lm train "${tiny[@]}" --carry --max-steps 5 --decay-steps 10 --quiet --dist mpi --checkpoint carry.ckpt
carried_resumed=$(group "$fwp" lm train --resume carry.ckpt --max-steps 10 --json --quiet --dist mpi --threads 1)
expect_same "lm --carry resume (2 processes)" "$carried_whole" "$carried_resumed"

# A global batch two processes cannot share: a usage error, said by the ranks.
set +e
odd_err=$(group "$fwp" lm train --data data --layers 1 --d-model 16 --heads 2 --d-head 8 --d-ff 32 --length 8 \
          --batch 3 --max-steps 2 --threads 1 --quiet --dist mpi 2>&1 >/dev/null)
odd_rc=$?
set -e
[[ $odd_rc != 0 ]] || fail "--batch 3 with two processes succeeded"
grep -q 'fwp: rank [01]: error: --batch 3 .*multiple of 2' <<<"$odd_err" || fail "--batch 3: unexpected message: $odd_err"

# ---- retrieval ----------------------------------------------------------------------
# A sweep over S: each run joins a new group for its own context.
args=(retrieval --keys 6:8:2 --batch 4 --max-steps 20 --eval-every 10 --threads 1 --target-loss 0 --patience 100 --json
      --quiet)
singles=$("$fwp" "${args[@]}")
pairs=$(group "$fwp" "${args[@]}" --dist mpi --sweep-csv sweep.csv)
expect_lines retrieval "$pairs" 2
for run in 1 2; do
  single=$(sed -n "${run}p" <<<"$singles")
  pair=$(sed -n "${run}p" <<<"$pairs")
  expect_close "retrieval S=$(field "$pair" keys)" "$single" "$pair"
  [[ $(field "$pair" world_size) == 2 ]] || fail "retrieval: --json says world_size $(field "$pair" world_size)"
done
[[ $(wc -l <sweep.csv) == 3 ]] || fail "retrieval: the sweep table has not one row per S: $(cat sweep.csv)"
# --skip-done in a group: only S = 10 runs, and rank 0 alone says which S it left out.
skipped=$(group "$fwp" retrieval --keys 6:10:2 --batch 4 --max-steps 20 --eval-every 10 --threads 1 --target-loss 0 \
           --patience 100 --json --dist mpi --sweep-csv sweep.csv --skip-done 2>skip.err)
expect_lines "retrieval --skip-done" "$skipped" 1
[[ $(field "$skipped" keys) == 10 ]] || fail "retrieval --skip-done ran S = $(field "$skipped" keys), not 10"
[[ $(grep -c 'S = 6, 8 already in sweep.csv' skip.err) == 1 ]] ||
  fail "retrieval --skip-done: the notice is not printed once: $(cat skip.err)"

# A diverging run: the global loss is NaN on every rank alike, so all stop at one step; rank 0 says why.
set +e
diverged=$(group "$fwp" retrieval --keys 6 --batch 4 --lr 1e30 --max-steps 50 --threads 1 --json --quiet --dist mpi \
           2>diverged.err)
diverged_rc=$?
set -e
[[ $diverged_rc != 0 && $(field "$diverged" stopped_by) == non_finite ]] || fail "diverging: rc $diverged_rc: $diverged"
[[ $(grep -c 'diverged at step' diverged.err) == 1 ]] || fail "diverging: not one message: $(cat diverged.err)"

# Ctrl-C seen by one rank only (SIGINT to rank 1): every rank stops after the same step,
# rank 0 saves and reports, the group exits 130, and --resume goes on from there.
"$mpiexec" -np 2 --oversubscribe "$fwp" retrieval --keys 6 --batch 4 --max-steps 100000000 --eval-every 1000 \
  --threads 1 --target-loss 0 --patience 1000 --json --quiet --dist mpi --dist-timeout 30 --checkpoint int.ckpt \
  >int.json 2>int.err &
launcher=$!
ranks=""
for _ in $(seq 1 100); do
  sleep 0.2
  ranks=$(pgrep -P "$launcher" | tr '\n' ' ')
  [[ $(wc -w <<<"$ranks") == 2 && -s int.ckpt ]] && break
done
[[ $(wc -w <<<"$ranks") == 2 ]] || fail "interrupt: the two ranks did not start: $(cat int.err)"
kill -INT "$(awk '{ print $NF }' <<<"$ranks")"
set +e
wait "$launcher"
int_rc=$?
set -e
[[ $int_rc == 130 ]] || fail "interrupt: exit code $int_rc, expected 130: $(cat int.err)"
interrupted=$(cat int.json)
expect_lines interrupt "$interrupted" 1
[[ $(field "$interrupted" stopped_by) == interrupted ]] || fail "interrupt: $interrupted"
grep -q "stopped at step $(field "$interrupted" steps) by SIGINT; saved to int.ckpt" int.err ||
  fail "interrupt: no notice from rank 0: $(cat int.err)"
grep -q "resume with: mpirun -np N .* --dist mpi --dist-timeout 30$" int.err ||
  fail "interrupt: the resume line does not run the group as it ran: $(cat int.err)"
more=$(($(field "$interrupted" steps) + 5))
continued=$(group "$fwp" retrieval --resume int.ckpt --max-steps "$more" --threads 1 --json --quiet --dist mpi)
[[ $(field "$continued" steps) == "$more" ]] || fail "interrupt: resuming did not reach step $more: $continued"

# ---- translation --------------------------------------------------------------------
if [[ "$with_mt" == mt ]]; then
  en=(the lord said unto moses and aaron go speak people land water light day night)
  es=(el senor dijo a moises y aaron ve habla pueblo tierra agua luz dia noche)
  mkdir -p corpus
  write_split() {  # name first last
    local i k w line_en line_es
    : >"corpus/$1.en"
    : >"corpus/$1.es"
    for ((i = $2; i <= $3; ++i)); do
      line_en=""
      line_es=""
      for ((k = 1; k <= 3 + i % 6; ++k)); do
        w=$(((i * 7 + k * 3 + k * i) % 15))
        line_en+="${en[$w]} "
        line_es+="${es[$w]} "
      done
      echo "${line_en% }" >>"corpus/$1.en"
      echo "${line_es% }" >>"corpus/$1.es"
    done
  }
  write_split train 1 60
  write_split valid 70 75
  write_split test 80 82
  "$fwp" mt prepare --corpus corpus --src-lang en --tgt-lang es --out mtdata --vocab-size 60 --quiet
  args=(mt train --data mtdata --encoder-layers 1 --decoder-layers 1 --d-model 16 --heads 2 --d-head 8 --d-ff 32
        --max-tokens 64 --eval-every 3 --bleu-sentences 2 --threads 1 --lr 0.01 --warmup 5 --dropout 0
        --max-steps 6 --json --quiet)
  single=$("$fwp" "${args[@]}")
  pair=$(group "$fwp" "${args[@]}" --dist mpi)
  expect_lines mt "$pair" 1
  expect_close mt "$single" "$pair"
  # Four processes on batches of about three pairs: some parts are empty (weight 0, no forward).
  args=("${args[@]/#64/40}")
  single=$("$fwp" "${args[@]}")
  four=$("$mpiexec" -np 4 --oversubscribe "$fwp" "${args[@]}" --dist mpi)
  expect_close "mt, empty parts" "$single" "$four"
  [[ $(field "$four" world_size) == 4 && $(field "$four" train_tokens) == $(field "$single" train_tokens) ]] ||
    fail "mt, empty parts: world_size/train_tokens: $four"
  # FAVOR+ draws new features at every training forward: a process with an empty part must
  # draw as the others (it runs a stand-in pair), or it draws other features at later steps.
  single=$("$fwp" "${args[@]}" --attn favor --checkpoint favor1.ckpt)
  four=$("$mpiexec" -np 4 --oversubscribe "$fwp" "${args[@]}" --attn favor --dist mpi --checkpoint favor4.ckpt)
  expect_close "mt favor, empty parts" "$single" "$four"
  # The loss of a barely trained model hardly depends on the features; what must hold is
  # that every process drew what the one process drew: rank 0's generator state in the
  # checkpoint is the one process's (else a resumed run would draw other features), and
  # the stored projections are equal.
  python3 - favor1.ckpt favor4.ckpt <<'PY' || fail "mt favor, empty parts: the random draws differ from one process's"
import json, struct, sys
def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    projections = {k: body[v["data_offsets"][0]:v["data_offsets"][1]]
                   for k, v in header.items() if k.endswith("favor.projection")}
    return header["__metadata__"]["model_rng"], projections
(rng1, one), (rng4, four) = read(sys.argv[1]), read(sys.argv[2])
assert len(one) == 3 and one.keys() == four.keys(), (sorted(one), sorted(four))
if rng1 != rng4:
    sys.exit("model_rng: one process " + rng1 + ", four " + rng4)
bad = [k for k in one if one[k] != four[k]]
if bad:
    sys.exit("differ: " + ", ".join(bad))
PY
fi
echo "check_dist: all passed"
