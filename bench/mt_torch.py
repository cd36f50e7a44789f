#!/usr/bin/env python3
"""Speed of fwp's translation model rebuilt in PyTorch (the other half of bench/mt_compare.sh).

A tool, not a test and not a dependency of the library. The network is fwp's
(include/fwp/seq2seq.h, src/models/seq2seq/seq2seq_network.cpp), module for module:
  embeddings: one table E for source, target and output (tied), sqrt(d) * E[x] + sinusoids
    (sin | cos halves, positions from 0, as fwp's), dropout;
  encoder: N post-LN layers  h = LN(x + drop(selfattn(x))), out = LN(h + drop(FFN(h)));
  decoder: M post-LN layers  causal self-attention, cross-attention over the encoder output, FFN;
  FFN = W2 drop(relu(W1 x + b1)) + b2; logits = h E^T (no bias);
  loss = fairseq's label-smoothed (0.1) cross-entropy, mean over the target tokens.
Attention: q, k, v, out projections without bias, then
  softmax  scaled_dot_product_attention (scale 1/sqrt(d_head)); causal in the decoder;
  elu      phi = elu + 1, attention-normalised: o_i = M phi(q_i) / (z . phi(q_i) + 1e-6) with
           M = sum_j v_j phi(k_j)^T, z = sum_j phi(k_j): over the whole source (encoder
           self-attention, cross-attention) or over j <= i (decoder, in training: --form cumsum,
           cumulative sums of the outer products, or --form chunked, bench/torch_compare.py's
           blockwise form with chunks of min(64, T)).
Decoding is incremental as in fairseq: the encoder runs once, then one decoder step per token
for all open hypotheses; the self-attention keeps a key/value cache (softmax) or the
fast-weight state M, z (elu); the cross-attention's keys/values (softmax) or M, z (elu) are
computed once per sentence; beam search reorders every state by the chosen parents
(index_select). Beam search follows fairseq's SequenceGenerator (top 2*beam candidates, eos
among the first beam finishes a hypothesis, a sentence is done with beam finished ones; pad and
bos never generated; eos refused before min_length, forced at max_len); greedy is argmax.
The synthetic batches have no padding, so no padding masks are built.

Install PyTorch in any virtual environment (CPU use only):
    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch
Then, e.g.:
    ~/venv-torch/bin/python bench/mt_torch.py --attention elu --threads 1
The "RESULT kind=... key=value" lines are what bench/mt_compare.sh reads; --json prints one
JSON object instead.
"""
import argparse
import json
import math
import os
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.stderr.write("mt_torch.py: PyTorch is not installed for " + sys.executable + ".\n"
                     "Install it in a virtual environment, e.g.\n"
                     "    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch\n"
                     "and run this script (or bench/mt_compare.sh with PYTHON=~/venv-torch/bin/python) with it.\n")
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_compare import sum_rule_chunked  # noqa: E402

BOS, PAD, EOS = 0, 1, 2  # fwp's defaults (fairseq's pad and eos)
EPS = 1e-6


def sinusoids(positions, d):
    """[len(positions), d]: sin(p f_i) | cos(p f_i), f_i = 1 / 10000^(2i/d) (fwp's sinusoid_row)."""
    half = (d + 1) // 2
    f = 1.0 / torch.pow(10000.0, torch.arange(half, dtype=torch.float64) * 2.0 / d)
    angles = positions.to(torch.float64)[:, None] * f[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)[:, : d - half]], dim=1).float()


def label_smoothed_loss(logits, target, eps):
    """fairseq's label_smoothed_nll_loss, summed: (1 - eps - e) nll + e sum_v -log p_v, e = eps / (V - 1)."""
    lp = F.log_softmax(logits, dim=-1)
    e = eps / (lp.shape[-1] - 1)
    nll = -lp.gather(-1, target[:, None]).sum()
    return (1.0 - eps - e) * nll - e * lp.sum()


def phi(x):
    return F.elu(x) + 1.0


class Attention(torch.nn.Module):
    """Multi-head attention, softmax or linear (elu + 1, normalised); queries from x, keys/values from m."""

    def __init__(self, d, heads, d_head, kind, form="cumsum"):
        super().__init__()
        self.H, self.D, self.kind, self.form = heads, d_head, kind, form
        self.q_proj = torch.nn.Linear(d, heads * d_head, bias=False)
        self.k_proj = torch.nn.Linear(d, heads * d_head, bias=False)
        self.v_proj = torch.nn.Linear(d, heads * d_head, bias=False)
        self.out_proj = torch.nn.Linear(heads * d_head, d, bias=False)

    def split(self, t):  # [B, T, H*D] -> [B, H, T, D]
        return t.reshape(t.shape[0], t.shape[1], self.H, self.D).transpose(1, 2)

    def merge(self, o):  # [B, H, T, D] -> [B, T, d]
        return self.out_proj(o.transpose(1, 2).reshape(o.shape[0], o.shape[2], self.H * self.D))

    def forward(self, x, m, causal):
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(m)), self.split(self.v_proj(m))
        if self.kind == "softmax":
            return self.merge(F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        q, k = phi(q), phi(k)
        if causal and self.form == "chunked":  # bench/torch_compare.py's blockwise form
            num = sum_rule_chunked(q, k, v, C=min(64, q.shape[2]))
            z = torch.cumsum(k, dim=2)
        elif causal:  # cumulative sums over the positions j <= i
            mem = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=2)  # [B, H, T, D, D]
            z = torch.cumsum(k, dim=2)
            num = torch.einsum("bhtd,bhtde->bhte", q, mem)
        else:
            mem = torch.einsum("bhsd,bhse->bhde", k, v)  # [B, H, D, D]
            z = k.sum(dim=2, keepdim=True)
            num = q @ mem
        return self.merge(num / ((q * z).sum(-1, keepdim=True) + EPS))

    # ---- incremental decoding: states are lists of tensors with rows first (reordered by index_select)
    def memory(self, m):
        """The cross-attention's per-sentence state from the encoder output m [B, S, d]."""
        k, v = self.split(self.k_proj(m)), self.split(self.v_proj(m))
        if self.kind == "softmax":
            return [k, v]
        k = phi(k)
        return [torch.einsum("bhsd,bhse->bhde", k, v), k.sum(dim=2)]  # M [B, H, D, D], z [B, H, D]

    def empty_self_state(self, rows):
        if self.kind == "softmax":
            return [torch.zeros(rows, self.H, 0, self.D), torch.zeros(rows, self.H, 0, self.D)]
        return [torch.zeros(rows, self.H, self.D, self.D), torch.zeros(rows, self.H, self.D)]

    def step_self(self, x, state):
        """x [R, 1, d]: one causal step; state updated in place of the list."""
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(x)), self.split(self.v_proj(x))
        if self.kind == "softmax":
            state[0] = torch.cat([state[0], k], dim=2)
            state[1] = torch.cat([state[1], v], dim=2)
            return self.merge(F.scaled_dot_product_attention(q, state[0], state[1]))
        q, k = phi(q)[:, :, 0], phi(k)[:, :, 0]  # [R, H, D]
        state[0] = state[0] + k.unsqueeze(-1) * v[:, :, 0].unsqueeze(-2)
        state[1] = state[1] + k
        return self.read(q, state)

    def step_cross(self, x, state):
        q = self.split(self.q_proj(x))
        if self.kind == "softmax":
            return self.merge(F.scaled_dot_product_attention(q, state[0], state[1]))
        return self.read(phi(q)[:, :, 0], state)

    def read(self, q, state):  # q [R, H, D] against M, z
        num = torch.einsum("rhd,rhde->rhe", q, state[0])
        o = num / ((q * state[1]).sum(-1, keepdim=True) + EPS)
        return self.merge(o.unsqueeze(2))


def feed_forward(layer, x):
    """W2 drop(relu(W1 x + b1)) + b2, with the layer's fc1, fc2 and dropout."""
    return layer.fc2(layer.drop(F.relu(layer.fc1(x))))


# Module names follow fwp's parameter names (fairseq's), so that --check loads fwp's parameters as they are.
class EncoderLayer(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.self_attn = Attention(a.d_model, a.heads, a.d_head, a.attention)
        self.self_attn_layer_norm = torch.nn.LayerNorm(a.d_model)
        self.fc1 = torch.nn.Linear(a.d_model, a.d_ff)
        self.fc2 = torch.nn.Linear(a.d_ff, a.d_model)
        self.final_layer_norm = torch.nn.LayerNorm(a.d_model)
        self.drop = torch.nn.Dropout(a.dropout)

    def forward(self, x):
        x = self.self_attn_layer_norm(x + self.drop(self.self_attn(x, x, causal=False)))
        return self.final_layer_norm(x + self.drop(feed_forward(self, x)))


class DecoderLayer(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.self_attn = Attention(a.d_model, a.heads, a.d_head, a.attention, a.form)
        self.self_attn_layer_norm = torch.nn.LayerNorm(a.d_model)
        self.encoder_attn = Attention(a.d_model, a.heads, a.d_head, a.attention)
        self.encoder_attn_layer_norm = torch.nn.LayerNorm(a.d_model)
        self.fc1 = torch.nn.Linear(a.d_model, a.d_ff)
        self.fc2 = torch.nn.Linear(a.d_ff, a.d_model)
        self.final_layer_norm = torch.nn.LayerNorm(a.d_model)
        self.drop = torch.nn.Dropout(a.dropout)

    def forward(self, x, enc):
        x = self.self_attn_layer_norm(x + self.drop(self.self_attn(x, x, causal=True)))
        x = self.encoder_attn_layer_norm(x + self.drop(self.encoder_attn(x, enc, causal=False)))
        return self.final_layer_norm(x + self.drop(feed_forward(self, x)))

    def step(self, x, self_state, cross_state):
        x = self.self_attn_layer_norm(x + self.self_attn.step_self(x, self_state))
        x = self.encoder_attn_layer_norm(x + self.encoder_attn.step_cross(x, cross_state))
        return self.final_layer_norm(x + feed_forward(self, x))


class Stack(torch.nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)


class Transformer(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.d = a.d_model
        self.embedding = torch.nn.Embedding(a.vocab, a.d_model)
        self.encoder = Stack(EncoderLayer(a) for _ in range(a.encoder_layers))
        self.decoder = Stack(DecoderLayer(a) for _ in range(a.decoder_layers))
        self.drop = torch.nn.Dropout(a.dropout)
        self.smoothing = 0.1
        for name, p in self.named_parameters():  # fwp's init: N(0, 0.02) weights, zero biases, unit LN gains
            if "layer_norm" in name:
                continue
            if name.endswith("bias"):
                torch.nn.init.zeros_(p)
            else:
                torch.nn.init.normal_(p, std=0.02)

    def embed(self, ids, positions):
        return self.drop(self.embedding(ids) * math.sqrt(self.d) + sinusoids(positions, self.d))

    def encode(self, src):
        x = self.embed(src, torch.arange(src.shape[1]))
        for layer in self.encoder.layers:
            x = layer(x)
        return x

    def forward(self, src, tgt_in, tgt_out):
        enc = self.encode(src)
        x = self.embed(tgt_in, torch.arange(tgt_in.shape[1]))
        for layer in self.decoder.layers:
            x = layer(x, enc)
        logits = x @ self.embedding.weight.t()
        return label_smoothed_loss(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                   self.smoothing) / tgt_out.numel()

    # ---- incremental decoding
    def begin(self, src):
        enc = self.encode(src)
        rows = src.shape[0]
        return {"self": [layer.self_attn.empty_self_state(rows) for layer in self.decoder.layers],
                "cross": [layer.encoder_attn.memory(enc) for layer in self.decoder.layers], "position": 0}

    def step(self, tokens, state):
        """tokens [R]: log-probabilities [R, V] of the next token; every state advances one position."""
        x = self.embed(tokens[:, None], torch.tensor([state["position"]]))
        for layer, s, c in zip(self.decoder.layers, state["self"], state["cross"]):
            x = layer.step(x, s, c)
        state["position"] += 1
        return F.log_softmax(x[:, 0] @ self.embedding.weight.t(), dim=-1)

    @staticmethod
    def reorder(state, parents):
        for group in ("self", "cross"):
            for s in state[group]:
                for i, t in enumerate(s):
                    s[i] = t.index_select(0, parents)


def mask_specials(lp, step, min_len, max_len):
    lp[:, PAD] = -math.inf
    lp[:, BOS] = -math.inf
    if step < min_len:
        lp[:, EOS] = -math.inf
    if step >= max_len:  # only eos may come
        eos = lp[:, EOS].clone()
        lp.fill_(-math.inf)
        lp[:, EOS] = eos


@torch.no_grad()
def greedy(model, src, min_len, max_len, length_penalty=1.0):
    """The most likely token every step; returns (score, tokens) per sentence as beam_search does."""
    n = src.shape[0]
    state = model.begin(src)
    tokens = torch.full((n,), BOS, dtype=torch.long)
    out = []
    sums = torch.zeros(n, dtype=torch.float64)
    lengths = torch.full((n,), -1, dtype=torch.long)  # tokens before the eos, once it came
    for step in range(max_len + 1):
        lp = model.step(tokens, state)
        mask_specials(lp, step, min_len, max_len)
        best, tokens = lp.max(-1)
        open_rows = lengths < 0
        sums += torch.where(open_rows, best.double(), torch.zeros((), dtype=torch.float64))
        lengths[open_rows & (tokens == EOS)] = step
        if (lengths >= 0).all():
            break
        out.append(tokens)
    out = torch.stack(out, 1) if out else torch.zeros(n, 0, dtype=torch.long)
    return [(sums[b].item() / (lengths[b].item() + 1) ** length_penalty, out[b, : lengths[b]].tolist())
            for b in range(n)]


@torch.no_grad()
def beam_search(model, src, beam, min_len, max_len, length_penalty=1.0):
    """fairseq's SequenceGenerator, batched over the open sentences; returns the best tokens per sentence."""
    n = src.shape[0]
    state = model.begin(src)  # one row per sentence until the first step has chosen
    rows_of = torch.arange(n)  # sentence of each row
    tokens = torch.full((n,), BOS, dtype=torch.long)
    scores = torch.zeros(n)
    history = torch.zeros(n, 0, dtype=torch.long)
    finished = [[] for _ in range(n)]
    open_sentences = list(range(n))
    for step in range(max_len + 1):
        lp = model.step(tokens, state)
        mask_specials(lp, step, min_len, max_len)
        V = lp.shape[1]
        k = lp.shape[0] // len(open_sentences)  # rows per open sentence: 1 at the first step, then beam
        cand = (scores[:, None] + lp).view(len(open_sentences), k * V)
        top_scores, top_idx = cand.topk(2 * beam, dim=1)  # sorted, best first
        parent = top_idx // V + torch.arange(len(open_sentences))[:, None] * k  # rows of this step
        token = top_idx % V
        is_eos = token == EOS
        # eos among the first beam candidates finishes a hypothesis (a -inf one never).
        first = is_eos[:, :beam] & torch.isfinite(top_scores[:, :beam])
        if first.any():
            for i, j in first.nonzero().tolist():
                length = history.shape[1] + 1
                finished[open_sentences[i]].append(
                    (top_scores[i, j].item() / length ** length_penalty, history[parent[i, j]].tolist()))
        still = [i for i, s in enumerate(open_sentences) if len(finished[s]) < beam]
        if not still:
            break
        still_t = torch.tensor(still)
        # The first beam candidates that are not eos stay open (fairseq's active_mask trick).
        order = is_eos[still_t].long() * (2 * beam) + torch.arange(2 * beam)
        keep = order.topk(beam, dim=1, largest=False).indices
        parents = parent[still_t].gather(1, keep).reshape(-1)
        tokens = token[still_t].gather(1, keep).reshape(-1)
        scores = top_scores[still_t].gather(1, keep).reshape(-1)
        history = torch.cat([history.index_select(0, parents), tokens[:, None]], dim=1)
        model.reorder(state, parents)
        open_sentences = [open_sentences[i] for i in still]
    return [max(f) if f else (-math.inf, []) for f in finished]


def translate(model, src, beam, out_len):
    """Forced length: min_length = max_len = out_len. Returns the wall and CPU ms."""
    c0, t0 = time.process_time(), time.perf_counter()
    search = greedy(model, src, out_len, out_len) if beam == 1 else beam_search(model, src, beam, out_len, out_len)
    lengths = [len(tokens) for _, tokens in search]
    ms, cpu = 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)
    if any(length != out_len for length in lengths):
        raise SystemExit(f"mt_torch.py: an output has {lengths} tokens, not the forced {out_len}")
    return ms, cpu


def check(model, a):
    """--check DIR: loads the parameters fwp_bench_mt --dump DIR wrote and recomputes its loss
    (pair by pair, unpadded: fwp's padded batch must give the sum of those) and its greedy and
    beam-4 translations (the search defaults: max length 1.2 n + 10, min length 1)."""
    names = [line.split() for line in open(f"{a.check}/params.txt")]
    flat = torch.frombuffer(bytearray(open(f"{a.check}/params.bin", "rb").read()), dtype=torch.float32)
    params = dict(model.named_parameters())
    if sorted(params) != sorted(name for name, _ in names):
        raise SystemExit(f"mt_torch.py --check: parameter names differ:\n fwp only {sorted(set(n for n, _ in names) - set(params))}"
                         f"\n torch only {sorted(set(params) - set(n for n, _ in names))}")
    offset = 0
    with torch.no_grad():
        for name, numel in names:
            p = params[name]
            p.copy_(flat[offset: offset + int(numel)].view_as(p))
            offset += int(numel)
    ref = {}
    beams = {"beam1": [], "beam4": []}
    for line in open(f"{a.check}/check.txt"):
        key, *vals = line.split()
        if key in beams:
            beams[key].append((float(vals[0]), [int(v) for v in vals[1:]]))
        else:
            ref[key] = [float(v) for v in vals]
    B, S, T = (int(v) for v in ref["shape"])
    ids = {k: torch.tensor(ref[k], dtype=torch.long) for k in ("src", "tgt_in", "tgt_out", "src_len", "tgt_len")}
    model.eval()
    loss = nll = 0.0
    failures = []
    with torch.no_grad():
        for b in range(B):
            ls, lt = int(ids["src_len"][b]), int(ids["tgt_len"][b])
            src = ids["src"].view(B, S)[b : b + 1, :ls]
            enc = model.encode(src)
            x = model.embed(ids["tgt_in"].view(B, T)[b : b + 1, :lt], torch.arange(lt))
            for layer in model.decoder.layers:
                x = layer(x, enc)
            logits = (x @ model.embedding.weight.t())[0].double()
            target = ids["tgt_out"].view(B, T)[b, :lt]
            loss += label_smoothed_loss(logits, target, model.smoothing).item()
            nll += F.cross_entropy(logits, target, reduction="sum").item()
            for beam, key in ((1, "beam1"), (4, "beam4")):
                max_len = math.floor(1.2 * ls + 10)
                got = (greedy(model, src, 1, max_len) if beam == 1 else beam_search(model, src, 4, 1, max_len))[0]
                want = beams[key][b]
                if got[1] != want[1] or abs(got[0] - want[0]) > 1e-4 * max(1.0, abs(want[0])):
                    failures.append(f"sentence {b} {key}: fwp {want} torch {got}")
    for name, mine in (("loss", loss), ("nll", nll)):
        theirs = ref[name][0]
        print(f"{name}: fwp {theirs:.6f} torch {mine:.6f}")
        if abs(mine - theirs) > 1e-5 * max(1.0, abs(theirs)):
            failures.append(f"{name} differs: fwp {theirs} torch {mine}")
    print(f"greedy and beam 4 on {B} sentences: {'the same' if not failures else 'DIFFERENT'}")
    if failures:
        raise SystemExit("mt_torch.py --check: " + "; ".join(failures))
    print("check passed: the PyTorch network computes what fwp's does")


def sources(gen, vocab, n, S):
    src = torch.randint(3, vocab, (n, S), generator=gen)
    src[:, -1] = EOS
    return src


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attention", default="elu", choices=["softmax", "elu"])
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--encoder-layers", type=int, default=2)
    ap.add_argument("--decoder-layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-head", type=int, default=32)
    ap.add_argument("--d-ff", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--src-len", type=int, default=24)
    ap.add_argument("--tgt-len", type=int, default=24)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sentences", type=int, default=32)
    ap.add_argument("--out-len", type=int, default=24)
    ap.add_argument("--growth", default="32,64,128,256,512")
    ap.add_argument("--growth-repeats", type=int, default=2)
    ap.add_argument("--form", default="cumsum", choices=["cumsum", "chunked"],
                    help="elu decoder self-attention in training: cumulative sums or the blockwise form")
    ap.add_argument("--train-only", action="store_true", help="time the training step only")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", metavar="DIR", help="compare with fwp_bench_mt --dump DIR (same sizes) and exit")
    a = ap.parse_args()
    growth = [int(x) for x in a.growth.split(",")]
    if min(a.vocab - 3, a.encoder_layers, a.decoder_layers, a.d_model, a.heads, a.d_head, a.d_ff, a.batch,
           a.src_len - 1, a.tgt_len - 1, a.threads, a.steps, a.sentences, a.out_len, a.growth_repeats,
           *growth) < 1:
        ap.error("sizes must be >= 1 (vocab >= 4, lengths >= 2)")
    if growth != sorted(set(growth)):
        ap.error("--growth lengths must be increasing")
    if a.warmup < 0:
        ap.error("--warmup must be >= 0")

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = Transformer(a)
    params = sum(p.numel() for p in model.parameters())
    if a.check:
        return check(model, a)
    log = (lambda *x, **kw: None) if a.json else print
    form = "sdpa" if a.attention == "softmax" else a.form
    log(f"torch {torch.__version__}: translation model, attention {a.attention} ({form}), {torch.get_num_threads()} thread(s); "
        f"{a.encoder_layers}+{a.decoder_layers} layers, d_model {a.d_model}, heads {a.heads} x {a.d_head}, "
        f"d_ff {a.d_ff}, vocab {a.vocab} (tied), post-LN; {params} parameters", flush=True)

    # 1. Training: zero_grad, forward, backward, Adam (betas 0.9/0.98, no clipping, as `fwp mt train`).
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-8)
    gen = torch.Generator().manual_seed(12345)
    fwd = bwd = upd = cpu = 0.0
    times = []
    loss = None
    for s in range(a.warmup + a.steps):
        src = sources(gen, a.vocab, a.batch, a.src_len)
        y = torch.randint(3, a.vocab, (a.batch, a.tgt_len - 1), generator=gen)
        tgt_in = torch.cat([torch.full((a.batch, 1), BOS), y], dim=1)
        tgt_out = torch.cat([y, torch.full((a.batch, 1), EOS)], dim=1)
        c0, t0 = time.process_time(), time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(src, tgt_in, tgt_out)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if s < a.warmup:
            continue
        cpu += time.process_time() - c0
        fwd, bwd, upd = fwd + t1 - t0, bwd + t2 - t1, upd + t3 - t2
        times.append(t3 - t0)
    ms = 1e3 / a.steps
    train = dict(batch=a.batch, src_len=a.src_len, tgt_len=a.tgt_len, steps=a.steps, step_ms=sum(times) * ms,
                 median_ms=1e3 * sorted(times)[len(times) // 2], fwd_ms=fwd * ms, bwd_ms=bwd * ms, opt_ms=upd * ms,
                 cpu_ms=cpu * ms, tokens_per_s=a.batch * (a.src_len + a.tgt_len) * a.steps / sum(times),
                 loss=loss.item())
    log(f"training, batch {a.batch} x ({a.src_len} source + {a.tgt_len} target), {a.steps} steps after {a.warmup} "
        f"warm-up: mean step {train['step_ms']:.1f} ms (median {train['median_ms']:.1f}, best {min(times) * 1e3:.1f}): "
        f"forward {train['fwd_ms']:.1f}, backward {train['bwd_ms']:.1f}, Adam {train['opt_ms']:.1f}; "
        f"CPU {train['cpu_ms']:.1f} ms/step; loss {train['loss']:.3f} (ln V = {math.log(a.vocab):.3f}); "
        f"{train['tokens_per_s']:.0f} tokens/s", flush=True)

    if a.train_only and a.json:
        print(json.dumps(dict(impl="torch", version=torch.__version__, attention=a.attention, form=form,
                              threads=torch.get_num_threads(), params=params, train=train)))
        return
    if a.train_only:
        print(f"RESULT kind=train impl=torch attention={a.attention} form={form} params={params} "
              f"tokens_per_s={train['tokens_per_s']:.1f} step_ms={train['step_ms']:.2f} cpu_ms={train['cpu_ms']:.2f} "
              f"threads={torch.get_num_threads()}")
        return

    # 2. Translation of N sources, beam 4 and greedy (a one-sentence warm-up first).
    model.eval()
    src = sources(torch.Generator().manual_seed(777), a.vocab, a.sentences, a.src_len)
    translate(model, src[:1], 4, a.out_len)
    trans = []
    for beam in (4, 1):
        t_ms, c_ms = translate(model, src, beam, a.out_len)
        trans.append(dict(beam=beam, sentences=a.sentences, out_len=a.out_len, ms=t_ms, cpu_ms=c_ms,
                          sentences_per_s=a.sentences / (t_ms / 1e3)))
        log(f"translate {a.sentences} sources of {a.src_len} tokens, beam {beam}, outputs forced to {a.out_len} "
            f"tokens: {t_ms:.1f} ms (CPU {c_ms:.1f} ms): {trans[-1]['sentences_per_s']:.1f} sentences/s", flush=True)

    # 3. Cost per output token as the output grows: one sentence, forced lengths, best of the repeats.
    rows = []
    for beam in (4, 1):
        prev_ms = prev_cpu = 0.0
        prev_len = 0
        for length in growth:
            best, best_cpu = min((translate(model, src[:1], beam, length) for _ in range(a.growth_repeats)),
                                 key=lambda t: t[1])
            rows.append(dict(beam=beam, length=length, ms=best, cpu_ms=best_cpu,
                             ms_per_token=(best_cpu - prev_cpu) / (length - prev_len),
                             wall_ms_per_token=(best - prev_ms) / (length - prev_len)))
            prev_ms, prev_cpu, prev_len = best, best_cpu, length

    if a.json:
        print(json.dumps(dict(impl="torch", version=torch.__version__, attention=a.attention, form=form,
                              threads=torch.get_num_threads(), params=params,
                              model=dict(encoder_layers=a.encoder_layers, decoder_layers=a.decoder_layers,
                                         d_model=a.d_model, heads=a.heads, d_head=a.d_head, d_ff=a.d_ff,
                                         vocab=a.vocab),
                              train=train, translate=trans, growth=rows)))
        return
    n = len(growth)
    print("\ndecoding one sentence: CPU ms of the whole translation and CPU ms per output token since the previous "
          f"forced length (best of {a.growth_repeats} by CPU time; wall ms/token in brackets)")
    print("| output length | beam 4 CPU ms | ms/token | greedy CPU ms | ms/token |\n|---|---|---|---|---|")
    for i in range(n):
        g, r = rows[n + i], rows[i]
        print(f"| {growth[i]} | {r['cpu_ms']:.1f} | {r['ms_per_token']:.3f} ({r['wall_ms_per_token']:.3f}) | "
              f"{g['cpu_ms']:.1f} | {g['ms_per_token']:.3f} ({g['wall_ms_per_token']:.3f}) |")
    print(f"RESULT kind=train impl=torch attention={a.attention} form={form} params={params} "
          f"tokens_per_s={train['tokens_per_s']:.1f} step_ms={train['step_ms']:.2f} cpu_ms={train['cpu_ms']:.2f} "
          f"threads={torch.get_num_threads()}")
    for t in trans:
        print(f"RESULT kind=translate beam={t['beam']} sentences_per_s={t['sentences_per_s']:.2f} ms={t['ms']:.2f} "
              f"cpu_ms={t['cpu_ms']:.2f}")
    for r in rows:
        print(f"RESULT kind=growth beam={r['beam']} length={r['length']} ms={r['ms']:.2f} cpu_ms={r['cpu_ms']:.2f} "
              f"ms_per_token={r['ms_per_token']:.4f} wall_ms_per_token={r['wall_ms_per_token']:.4f}")


if __name__ == "__main__":
    main()
