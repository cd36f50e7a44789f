#!/usr/bin/env python3
"""Training tokens/s of fwp's language model rebuilt in PyTorch (the other half of bench/lm_compare.sh).

A tool, not a test and not a dependency of the library. The network is fwp's
(include/fwp/lm.h, src/models/lm/lm_model.cpp) layer for layer:
  embedding * sqrt(d_model) + the authors' sinusoids (sin | cos halves), dropout;
  num_layers post-LayerNorm blocks: h = LN1(x + dropout(attn(x))),
                                    out = LN2(h + dropout(W2 dropout(relu(W1 h + b1)) + b2));
  output layer W h + b (not tied), softmax and mean cross-entropy.
attn: q, k, v (and beta for the delta rule) from one bias-free projection, then
  softmax  causal softmax attention (scaled_dot_product_attention, scale 1/sqrt(d_head));
  sum      elu + 1, sum-normalised, W_t = W_{t-1} + v_t phi(k_t)^T, o_t = W_t phi(q_t);
  delta    the same with W_t = W_{t-1} + beta_t (v_t - W_{t-1} phi(k_t)) phi(k_t)^T;
fast-weight outputs scaled by 1/sqrt(d_head), then a bias-free output projection.
The fast-weight recurrences come from bench/torch_compare.py: "loop" is the
authors' recurrent formulation written plainly in torch ops (one rank-1 update
per step, as the pure-PyTorch fallback of their toolkit), "chunked" the
chunkwise form (WY/UT for the delta rule). One training step is zero_grad,
forward, backward, clip_grad_norm_(0.25) and Adam, on random tokens.

Install PyTorch in any virtual environment (CPU wheels suffice):
    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch
Then, e.g.:
    ~/venv-torch/bin/python bench/lm_torch.py --preset cpu-small --vocab 8000 --attention delta --threads 2
The last line, "RESULT key=value ...", is what bench/lm_compare.sh reads.
"""
import argparse
import math
import os
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.stderr.write("lm_torch.py: PyTorch is not installed for " + sys.executable + ".\n"
                     "Install it in a virtual environment, e.g.\n"
                     "    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch\n"
                     "and run this script (or bench/lm_compare.sh with PYTHON=~/venv-torch/bin/python) with it.\n")
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_compare import (delta_rule_chunked, delta_rule_loop, phi,  # noqa: E402
                           sum_rule_chunked, sum_rule_loop)

# fwp_lm_config_preset(): layers, d_model, heads, d_head, d_ff; and `fwp lm train`'s segments (batch, length).
PRESETS = {
    "cpu-small": dict(layers=4, d_model=128, heads=4, d_head=32, d_ff=512, batch=16, length=64),
    "paper-small": dict(layers=16, d_model=128, heads=8, d_head=16, d_ff=2048, batch=8, length=256),
    "paper-medium": dict(layers=16, d_model=256, heads=8, d_head=32, d_ff=2048, batch=56, length=384),
}
FORMS = {"sum": {"loop": sum_rule_loop, "chunked": sum_rule_chunked},
         "delta": {"loop": delta_rule_loop, "chunked": delta_rule_chunked}}


def sinusoids(length, d):
    """[length, d]: sin(p f_i) in the first half, cos(p f_i) in the second, f_i = 1 / 10000^(2i/d)."""
    half = (d + 1) // 2
    f = 1.0 / torch.pow(10000.0, torch.arange(half, dtype=torch.float64) * 2.0 / d)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * f[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)[:, : d - half]], dim=1).float()


class Attention(torch.nn.Module):
    def __init__(self, d_model, heads, d_head, kind, form):
        super().__init__()
        self.heads, self.d_head, self.kind = heads, d_head, kind
        self.recurrence = None if kind == "softmax" else FORMS[kind][form]
        betas = heads if kind == "delta" else 0
        self.qkvb = torch.nn.Linear(d_model, 3 * heads * d_head + betas, bias=False)
        self.out = torch.nn.Linear(heads * d_head, d_model, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        H, D = self.heads, self.d_head
        parts = torch.split(self.qkvb(x), [H * D, H * D, H * D] + ([H] if self.kind == "delta" else []), dim=-1)
        q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in parts[:3])  # [B, H, T, D]
        if self.kind == "softmax":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            q, k = phi(q), phi(k)
            if self.kind == "delta":
                o = self.recurrence(q, k, v, torch.sigmoid(parts[3]).transpose(1, 2))  # beta [B, H, T]
            else:
                o = self.recurrence(q, k, v)
            o = o / math.sqrt(D)
        return self.out(o.transpose(1, 2).reshape(B, T, H * D))


class FeedForward(torch.nn.Module):
    def __init__(self, d_model, d_ff, dropout):
        super().__init__()
        self.linear1 = torch.nn.Linear(d_model, d_ff)
        self.linear2 = torch.nn.Linear(d_ff, d_model)
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.linear2(self.drop(F.relu(self.linear1(x)))))


class Block(torch.nn.Module):
    def __init__(self, a, kind, form):
        super().__init__()
        self.attn = Attention(a.d_model, a.heads, a.d_head, kind, form)
        self.norm1 = torch.nn.LayerNorm(a.d_model)
        self.ff = FeedForward(a.d_model, a.d_ff, a.dropout)
        self.norm2 = torch.nn.LayerNorm(a.d_model)
        self.drop = torch.nn.Dropout(a.dropout)

    def forward(self, x):
        h = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(h + self.ff(h))


class LanguageModel(torch.nn.Module):
    def __init__(self, a, kind, form):
        super().__init__()
        self.d_model = a.d_model
        self.embedding = torch.nn.Embedding(a.vocab, a.d_model)
        self.layers = torch.nn.ModuleList(Block(a, kind, form) for _ in range(a.layers))
        self.output = torch.nn.Linear(a.d_model, a.vocab)
        self.drop = torch.nn.Dropout(a.dropout)
        self.register_buffer("positions", sinusoids(a.length, a.d_model), persistent=False)
        for name, p in self.named_parameters():  # fwp's init: N(0, 0.02) weights, zero biases, unit LN gains
            if "norm" in name:
                continue
            if name.endswith("bias"):
                torch.nn.init.zeros_(p)
            else:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, inputs, targets):
        x = self.embedding(inputs) * math.sqrt(self.d_model) + self.positions[: inputs.shape[1]]
        x = self.drop(x)
        for layer in self.layers:
            x = layer(x)
        logits = self.output(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def group_of(name):
    """The same grouping as fwp_bench_lm_train's (by parameter name)."""
    if name.startswith("embedding"):
        return "embedding"
    if name.startswith("output"):
        return "output"
    if ".attn." in name:
        return "attention"
    if ".ff." in name:
        return "feed_forward"
    if "norm" in name:
        return "layer_norm"
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    ap.add_argument("--attention", default="delta", choices=["softmax", "sum", "delta"])
    ap.add_argument("--form", default="loop", choices=["loop", "chunked"],
                    help="fast-weight recurrence: the authors' per-step loop or the chunkwise form")
    ap.add_argument("--vocab", type=int, default=8000)
    for flag in ("layers", "d-model", "heads", "d-head", "d-ff", "batch", "length"):
        ap.add_argument("--" + flag, type=int, default=0, help="0: the preset's")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    for key, value in PRESETS[a.preset].items():
        if getattr(a, key) == 0:
            setattr(a, key, value)
    if min(a.vocab, a.layers, a.d_model, a.heads, a.d_head, a.d_ff, a.batch, a.length, a.threads, a.steps) < 1:
        ap.error("sizes, --threads and --steps must be >= 1")
    if a.warmup < 0:
        ap.error("--warmup must be >= 0")

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    form = "sdpa" if a.attention == "softmax" else a.form
    model = LanguageModel(a, a.attention, a.form)
    model.train()
    groups = {}
    for name, p in model.named_parameters():
        groups[group_of(name)] = groups.get(group_of(name), 0) + p.numel()
    groups["total"] = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=2.5e-4)

    print(f"torch {torch.__version__}: LM training step (forward + backward + Adam, clip 0.25), cpu, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"model: {a.preset}, attention {a.attention} ({form}), vocab {a.vocab}, layers {a.layers}, "
          f"d_model {a.d_model}, heads {a.heads} x {a.d_head}, d_ff {a.d_ff}; batch {a.batch} x length {a.length}")
    print("parameters: " + " ".join(f"{k}={groups[k]}" for k in sorted(groups)))

    gen = torch.Generator().manual_seed(12345)
    fwd = bwd = upd = 0.0
    step_times = []
    cpu = 0.0  # process CPU time of the timed steps (all threads), as fwp_bench_lm_train reports it
    loss = None
    for s in range(a.warmup + a.steps):
        inputs = torch.randint(0, a.vocab, (a.batch, a.length), generator=gen)
        targets = torch.randint(0, a.vocab, (a.batch, a.length), generator=gen)
        c0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(inputs, targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        t3 = time.perf_counter()
        if s < a.warmup:
            continue
        cpu += time.process_time() - c0
        fwd += t1 - t0
        bwd += t2 - t1
        upd += t3 - t2
        step_times.append(t3 - t0)
    total = sum(step_times)
    tokens_per_s = a.batch * a.length * a.steps / total
    ms = 1e3 / a.steps
    median = sorted(step_times)[len(step_times) // 2]
    print(f"{a.steps} timed steps after {a.warmup} warm-up: mean step {total * ms:.1f} ms "
          f"(median {median * 1e3:.1f}, best {min(step_times) * 1e3:.1f}): forward {fwd * ms:.1f}, "
          f"backward {bwd * ms:.1f}, optimizer {upd * ms:.1f} ms; CPU time {cpu * ms:.1f} ms per step; loss {loss.item():.3f} "
          f"(ln V = {math.log(a.vocab):.3f})")
    print(f"tokens/s: {tokens_per_s:.0f}")
    print(f"RESULT impl=torch attention={a.attention} form={form} params={groups['total']} "
          f"tokens_per_s={tokens_per_s:.1f} step_ms={total * ms:.2f} fwd_ms={fwd * ms:.2f} bwd_ms={bwd * ms:.2f} "
          f"opt_ms={upd * ms:.2f} cpu_ms={cpu * ms:.2f} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
