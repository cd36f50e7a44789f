# The settings of the runs in docs/results/retrieval.md (2026-11-28).
# Setting 1: FWP=/work/sweep/fwp (commit 235f14c); setting 2: FWP=/work/sweep2/fwp (commit 80448ed).
export FWP=/work/sweep/fwp LD_LIBRARY_PATH=/work/sweep MAX_STEPS=10000 SEED=1 THREADS=1
export OUT=/work/main/results/retrieval-s2 DOCS=/work/main/results/retrieval-s2/docs
export S1_ELU=20:420:40 S1_DPFP1=20:420:40 S1_DPFP2=20:420:40 S1_DPFP3=20:420:40 S1_FAVOR=20:420:40 S1_SOFTMAX=20:420:40
export S2_KEYS=20:200:20
