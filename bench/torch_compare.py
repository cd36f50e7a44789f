#!/usr/bin/env python3
"""Side-by-side CPU comparison: fwp's fast-weight layer vs the same layer in PyTorch.

A tool, not a test and not a dependency of the library. It times forward +
backward of an equivalent PyTorch layer (projections to q, k, v and beta,
elu+1 feature map, sum normalisation, delta or sum rule, output scaling and
projection) at the shapes of performance.md with the same thread count, runs
fwp's benchmark binary on the same shapes in the same invocation, and prints
the ratio. For each PyTorch configuration it times every formulation we have
(per-step loop, chunkwise) and compares fwp with the fastest one.

Usage (torch from PyPI in any venv):
    python3 bench/torch_compare.py --fwp-bench build/bench/fwp_bench_cpu --threads 2
"""
import argparse
import json
import os
import math
import subprocess
import time

import torch
import torch.nn.functional as F

SHAPES = [  # name, B, T, H, D
    ("B32_T256_H8_D16", 32, 256, 8, 16),
    ("B56_T384_H8_D32", 56, 384, 8, 32),
    ("B8_T2048_H16_D64", 8, 2048, 16, 64),
]
EPS = 1e-6


def phi(x):
    """elu+1, then sum normalisation (fwp's default for the delta rule)."""
    p = F.elu(x) + 1.0
    return p / (p.sum(-1, keepdim=True) + EPS)


def delta_rule_loop(q, k, v, beta):
    """The authors' reference form: one rank-1 update per step. q,k,v: [B,H,T,D]."""
    B, H, T, D = q.shape
    W = q.new_zeros(B, H, D, k.shape[-1])
    outs = []
    for t in range(T):
        kt, vt, qt, bt = k[:, :, t], v[:, :, t], q[:, :, t], beta[:, :, t, None]
        vbar = torch.einsum("bhvk,bhk->bhv", W, kt)
        W = W + torch.einsum("bhv,bhk->bhvk", bt * (vt - vbar), kt)
        outs.append(torch.einsum("bhvk,bhk->bhv", W, qt))
    return torch.stack(outs, dim=2)


def delta_rule_chunked(q, k, v, beta, C=64):
    """Chunkwise WY/UT form (Yang et al. 2024) in plain PyTorch."""
    B, H, T, D = q.shape
    Dk = k.shape[-1]
    pad = (-T) % C
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        beta = F.pad(beta, (0, pad))
    n = q.shape[2] // C
    q, k, v = (t.reshape(B, H, n, C, -1) for t in (q, k, v))
    beta = beta.reshape(B, H, n, C)
    kb = k * beta[..., None]
    A = torch.tril(kb @ k.transpose(-1, -2), -1)
    eye = torch.eye(C, dtype=q.dtype)
    Tm = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False, unitriangular=True)
    Wp = Tm @ kb
    Up = Tm @ (v * beta[..., None])
    S = q.new_zeros(B, H, Dk, v.shape[-1])
    mask = torch.tril(torch.ones(C, C, dtype=torch.bool))
    outs = []
    for i in range(n):
        qi, ki = q[:, :, i], k[:, :, i]
        u = Up[:, :, i] - Wp[:, :, i] @ S
        att = (qi @ ki.transpose(-1, -2)).masked_fill(~mask, 0)
        outs.append(qi @ S + att @ u)
        S = S + ki.transpose(-1, -2) @ u
    o = torch.stack(outs, dim=2).reshape(B, H, n * C, -1)
    return o[:, :, :T]


def sum_rule_chunked(q, k, v, C=64):
    """Linear attention, blockwise causal: the fastest plain-PyTorch form we know."""
    B, H, T, D = q.shape
    pad = (-T) % C
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    n = q.shape[2] // C
    q, k, v = (t.reshape(B, H, n, C, -1) for t in (q, k, v))
    mask = torch.tril(torch.ones(C, C, dtype=torch.bool))
    kv = k.transpose(-1, -2) @ v                      # per-chunk K^T V
    S = torch.cumsum(kv, dim=2) - kv                  # state before each chunk
    att = (q @ k.transpose(-1, -2)).masked_fill(~mask, 0)
    o = q @ S + att @ v
    return o.reshape(B, H, n * C, -1)[:, :, :T]


def sum_rule_loop(q, k, v):
    B, H, T, D = q.shape
    W = q.new_zeros(B, H, v.shape[-1], k.shape[-1])
    outs = []
    for t in range(T):
        W = W + torch.einsum("bhv,bhk->bhvk", v[:, :, t], k[:, :, t])
        outs.append(torch.einsum("bhvk,bhk->bhv", W, q[:, :, t]))
    return torch.stack(outs, dim=2)


class Layer(torch.nn.Module):
    def __init__(self, H, D, rule, attention):
        super().__init__()
        dm = H * D
        self.H, self.D, self.rule, self.attention = H, D, rule, attention
        self.qkvb = torch.nn.Linear(dm, H * (3 * D + 1), bias=False)
        self.out = torch.nn.Linear(H * D, dm, bias=False)
        torch.nn.init.normal_(self.qkvb.weight, std=0.02)
        torch.nn.init.normal_(self.out.weight, std=0.02)

    def forward(self, x):
        B, T, dm = x.shape
        H, D = self.H, self.D
        qkvb = self.qkvb(x)
        q, k, v, b = torch.split(qkvb, [H * D, H * D, H * D, H], dim=-1)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        if self.attention == "softmax":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out(o.transpose(1, 2).reshape(B, T, H * D))
        q, k = phi(q), phi(k)
        if self.rule == "delta":
            beta = torch.sigmoid(b).transpose(1, 2)
            o = self.attention(q, k, v, beta)
        else:
            o = self.attention(q, k, v)
        o = o / math.sqrt(D)
        return self.out(o.transpose(1, 2).reshape(B, T, H * D))


def time_fwd_bwd(layer, x, dy, repeats, warmup=1):
    for _ in range(warmup):
        layer.zero_grad(set_to_none=True)
        layer(x).backward(dy)
    times = []
    for _ in range(repeats):
        layer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        layer(x).backward(dy)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3


def run_fwp(binary, threads, min_time):
    out = subprocess.run(
        [binary, "--benchmark_filter=^Layer/", "--benchmark_format=json", f"--benchmark_min_time={min_time}"],
        check=True, capture_output=True, text=True,
        # Same environment as the PyTorch side (OMP_* settings apply to both).
        env={**os.environ, "FWP_BENCH_THREADS": str(threads)})
    result = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        # UseRealTime() appends "/real_time" to the registered name; times are in ms.
        result[b["name"].removesuffix("/real_time")] = b["real_time"]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fwp-bench", default="build/bench/fwp_bench_cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", default="1")
    ap.add_argument("--skip-loop-above", type=int, default=400,
                    help="skip the per-step PyTorch loop for T above this (it takes minutes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    fwp = run_fwp(args.fwp_bench, args.threads, args.min_time)
    rows = []
    for name, B, T, H, D in SHAPES:
        x = torch.randn(B, T, H * D)
        dy = torch.randn(B, T, H * D) * 1e-3
        variants = {
            "delta": [("loop", delta_rule_loop), ("chunked", delta_rule_chunked)],
            "sum": [("loop", sum_rule_loop), ("chunked", sum_rule_chunked)],
        }
        for rule, forms in variants.items():
            best = None
            for form, fn in forms:
                if form == "loop" and T > args.skip_loop_above:
                    continue
                ms = time_fwd_bwd(Layer(H, D, rule, fn), x, dy, args.repeats)
                print(f"torch {rule:5s} {form:8s} {name:18s} {ms:10.2f} ms", flush=True)
                if best is None or ms < best[1]:
                    best = (form, ms)
            ours = min(fwp.get(f"Layer/elu/{rule}/{a}/{name}", math.inf) for a in ("recurrent", "chunked"))
            rows.append((name, rule, best[0], best[1], ours))
        ms = time_fwd_bwd(Layer(H, D, "sum", "softmax"), x, dy, args.repeats)
        rows.append((name, "softmax", "sdpa", ms, fwp.get(f"Layer/softmax/{name}", math.inf)))

    print(f"\nfwd+bwd of the layer, {args.threads} threads, median ms (torch {torch.__version__})")
    print(f"| shape | rule | torch (best form) ms | fwp ms | torch / fwp |")
    print(f"|---|---|---|---|---|")
    for name, rule, form, tms, fms in rows:
        print(f"| {name} | {rule} | {tms:.2f} ({form}) | {fms:.2f} | {tms / fms:.2f}x |")


if __name__ == "__main__":
    main()
