"""PyTorch eager peer of `cht bench lm`'s small language model (the peer benchmark of
scripts/bench_peer.sh; a development tool, not a test).

The model has exactly the shape of cht's `lm_small` (crates/cht-cli/src/bench.rs): vocabulary 65,
width 128, 4 heads, 4 LLaMA blocks (RMSNorm, q/k/v/o without bias, RoPE base 10000, causal
scaled-dot-product attention, RMSNorm, SwiGLU 352), final RMSNorm, an untied dense head; 16
sequences of 128 tokens per step; cross-entropy, backward, global-norm clipping at 1.0, AdamW
(lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay). `--density 0.1` multiplies every block
projection by a fixed 0/1 mask in the forward pass, as the official CHT LLM code does (masked
dense). Prints one JSON line: tokens/s over the timed steps after two warm-up steps.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Linear(torch.nn.Module):
    """A linear map without bias; with `density < 1` its weight is masked in every forward."""

    def __init__(self, n_in, n_out, density):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(n_out, n_in))
        torch.nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        if density < 1.0:
            self.register_buffer("mask", (torch.rand(n_out, n_in) < density).float())
        else:
            self.mask = None

    def forward(self, x):
        w = self.weight if self.mask is None else self.weight * self.mask
        return F.linear(x, w)


def rope_tables(head_dim, seq, base=10000.0):
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(seq).float(), inv)
    return angles.cos(), angles.sin()


def rope(x, cos, sin):
    # x: [batch, heads, seq, head_dim]; rotates the pairs (i, i + head_dim/2).
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, d, heads, ffn, density):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (Linear(d, d, density) for _ in range(4))
        self.gate, self.up = Linear(d, ffn, density), Linear(d, ffn, density)
        self.down = Linear(ffn, d, density)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        h = self.norm1(x)
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Lm(torch.nn.Module):
    def __init__(self, vocab, d, heads, ffn, layers, seq, density):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, d)
        self.blocks = torch.nn.ModuleList(Block(d, heads, ffn, density) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = Linear(d, vocab, 1.0)
        cos, sin = rope_tables(d // heads, seq)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, ids):
        x = self.embedding(ids)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        return self.head(self.norm(x))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--density", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    vocab, d, heads, ffn, layers, seq, batch = 65, 128, 4, 352, 4, 128, 16
    model = Lm(vocab, d, heads, ffn, layers, seq, a.density)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    ids = torch.randint(0, vocab, (batch, seq))
    targets = torch.randint(0, vocab, (batch, seq))

    def step():
        logits = model(ids)
        loss = F.cross_entropy(logits.view(-1, vocab), targets.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss.item()
    elapsed = time.perf_counter() - start
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": a.threads,
                      "density": a.density, "steps": a.steps,
                      "tokens_per_s": a.steps * batch * seq / elapsed}))


if __name__ == "__main__":
    main()
