#!/usr/bin/env python3
"""Step time of data-parallel training against the number of processes, from a
compute rate and a ring all-reduce model (docs/distributed.md):

    t(N) = t_compute(N) + t_fixed + t_allreduce(N)
    t_compute(N)   = tokens_per_step / (N * tokens_per_s_per_process)   (forward + backward)
    t_fixed        = what every replica does whole: the optimizer update
    t_allreduce(N) = 2 (N - 1) / N * bytes / bus_bandwidth + 2 (N - 1) * latency   (0 for N = 1)

with no overlap of the reduction and the backward pass (fwp does not overlap
them). Efficiency = t(1) / (N t(N)): the global batch stays fixed (strong
scaling), as when a run of the paper is spread over more GPUs.

  python3 scripts/dist-step-model.py --params 89866202 --tokens-per-step 21504 \\
      --tokens-per-s 29000 --bandwidth-gbs 10 100 --latency-us 10
"""
import argparse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=int, required=True, help="trainable parameters (float32 gradients)")
    p.add_argument("--tokens-per-step", type=int, required=True, help="tokens of one global batch")
    p.add_argument("--tokens-per-s", type=float, required=True, help="training tokens/s of one process")
    p.add_argument("--fixed-s", type=float, default=0.0,
                   help="seconds per step that do not shrink with N (the optimizer update of the whole replica)")
    p.add_argument("--bandwidth-gbs", type=float, nargs="+", required=True,
                   help="all-reduce bus bandwidths to tabulate, GB/s")
    p.add_argument("--latency-us", type=float, default=10.0, help="per-message latency, microseconds")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    a = p.parse_args()

    size = 4 * a.params
    print(f"all-reduce of {size / 1e6:.1f} MB per step; forward + backward {a.tokens_per_step / a.tokens_per_s:.3f} s "
          f"per step on one process ({a.tokens_per_s:.0f} tokens/s, {a.tokens_per_step} tokens per step), "
          f"update {a.fixed_s:.3f} s")
    header = "| processes | compute + update (s) |" + "".join(f" all-reduce at {b:g} GB/s (s) | step (s) | efficiency |"
                                                  for b in a.bandwidth_gbs)
    print(header)
    print("|" + "---|" * (2 + 3 * len(a.bandwidth_gbs)))
    t1 = a.tokens_per_step / a.tokens_per_s + a.fixed_s
    for n in a.processes:
        compute = (t1 - a.fixed_s) / n + a.fixed_s
        row = f"| {n} | {compute:.3f} |"
        for b in a.bandwidth_gbs:
            reduce = 0.0 if n == 1 else 2 * (n - 1) / n * size / (b * 1e9) + 2 * (n - 1) * a.latency_us * 1e-6
            step = compute + reduce
            row += f" {reduce:.4f} | {step:.3f} | {t1 / (n * step):.2f} |"
        print(row)


if __name__ == "__main__":
    main()
