#!/usr/bin/env python3
"""Trains bnc's example model: a small BitNet b1.58 of the 2B-4T architecture
(relu^2 gated FFN, sub-norms, GQA, NeoX RoPE, tied embedding) on the King
James Bible, with quantization-aware BitLinear layers, and exports it to GGUF.

    ./make_corpus.sh .                                # train.txt, heldout.txt
    python3 train.py --out OUT [--steps 600] [--seed 1]

Writes OUT/bitnet-kjv-i2_s.gguf and OUT/bitnet-kjv-tq2_0.gguf (linears as I2_S
and TQ2_0, embedding F16, the tokenizer as gpt2 vocab + merges),
OUT/reference.json (held-out perplexity and a greedy continuation computed by
PyTorch with bnc's exact inference semantics) and OUT/heldout.tokens (the
held-out token ids, int32 little-endian). Deterministic given --seed.

BitLinear at inference, as bnc and transformers define it: per token
s = 127 / max|x|, q = clamp(round_half_even(x s), -128, 127); ternary
t = clamp(round(W / mean|W|), -1, 1); y = (q . t) * mean|W| / s. Training uses
the same quantizers with straight-through gradients.
"""
import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.attention
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

LLAMA3_PRE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]


# ---------------------------------------------------------------- tokenizer

def train_tokenizer(path, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PRE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([path], trainer)
    return tok


def vocab_and_merges(tok):
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, merges


# ---------------------------------------------------------------- model

class Config:
    def __init__(self, vocab):
        # rows (embd, ff) are whole 256-element blocks: what TQ2_0 and bnc's packed layout need
        self.vocab, self.embd, self.layers, self.heads, self.kv_heads = vocab, 512, 6, 8, 2
        self.ff, self.ctx, self.rope_base, self.eps = 1536, 256, 10000.0, 1e-5
        self.head_dim = self.embd // self.heads


def act_quant(x):
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127), s


def weight_quant(w):
    m = w.abs().mean().clamp(min=1e-5)
    return (w / m).round().clamp(-1, 1), m


class BitLinear(nn.Linear):
    exact = False  # inference with integer sums, as bnc computes

    def forward(self, x):
        t, m = weight_quant(self.weight)
        q, s = act_quant(x)
        if BitLinear.exact:
            acc = q.double() @ t.double().t()  # exact integer sums
            return (acc * m.double() / s.double()).float()
        w = self.weight + (t * m - self.weight).detach()
        xq = x + (q / s - x).detach()
        return F.linear(xq, w)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * r) * self.weight


def rope(x, pos, base):
    d = x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float64) / d))
    ang = pos[:, None].double() * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # NeoX: i with i + d/2


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        kv = c.head_dim * c.kv_heads
        self.attn_norm, self.attn_sub_norm = RMSNorm(c.embd, c.eps), RMSNorm(c.embd, c.eps)
        self.ffn_norm, self.ffn_sub_norm = RMSNorm(c.embd, c.eps), RMSNorm(c.ff, c.eps)
        self.q, self.k, self.v = BitLinear(c.embd, c.embd, False), BitLinear(c.embd, kv, False), BitLinear(c.embd, kv, False)
        self.o = BitLinear(c.embd, c.embd, False)
        self.gate, self.up, self.down = BitLinear(c.embd, c.ff, False), BitLinear(c.embd, c.ff, False), BitLinear(c.ff, c.embd, False)

    def forward(self, x, pos):
        c = self.c
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(B, T, c.heads, c.head_dim).transpose(1, 2)
        k = self.k(h).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v(h).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = rope(q, pos, c.rope_base), rope(k, pos, c.rope_base)
        rep = c.heads // c.kv_heads  # q head h reads kv head h // rep
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):  # deterministic
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(B, T, c.embd)
        x = x + self.o(self.attn_sub_norm(a))
        h = self.ffn_norm(x)
        m = F.relu(self.gate(h)).square() * self.up(h)
        return x + self.down(self.ffn_sub_norm(m))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embd = nn.Embedding(c.vocab, c.embd)
        nn.init.normal_(self.embd.weight, std=0.02)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.layers)])
        self.norm = RMSNorm(c.embd, c.eps)
        self.half_embd = False  # use the F16-rounded embedding (what the GGUF stores)

    def forward(self, ids):
        w = self.embd.weight.half().float() if self.half_embd else self.embd.weight
        x = F.embedding(ids, w)
        pos = torch.arange(ids.shape[1], device=ids.device)
        for layer in self.layers:
            x = layer(x, pos)
        return self.norm(x) @ w.t()  # tied output


# ---------------------------------------------------------------- evaluation (bnc's semantics)

@torch.no_grad()
def perplexity(model, ids, ctx):
    """Non-overlapping windows of ctx tokens; in each, every token but the first is scored."""
    BitLinear.exact, model.half_embd = True, True
    nll = []
    for i in range(0, len(ids) - 1, ctx):
        w = ids[i:i + ctx]
        if len(w) < 2:
            break
        x = torch.tensor([w], device="cuda")
        logits = model(x)[0, :-1].double()
        nll.append(F.cross_entropy(logits, x[0, 1:], reduction="none"))
    BitLinear.exact, model.half_embd = False, False
    nll = torch.cat(nll)
    mean = nll.mean().item()
    err = nll.std().item() / math.sqrt(len(nll))
    return math.exp(mean), math.exp(mean) * err, len(nll)


@torch.no_grad()
def greedy(model, ids, n):
    BitLinear.exact, model.half_embd = True, True
    out = list(ids)
    for _ in range(n):
        logits = model(torch.tensor([out], device="cuda"))[0, -1]
        out.append(int(logits.argmax()))
    BitLinear.exact, model.half_embd = False, False
    return out[len(ids):]


# ---------------------------------------------------------------- GGUF export

def kv_str(k, v):
    b = v.encode()
    return struct.pack("<Q", len(k)) + k.encode() + struct.pack("<IQ", 8, len(b)) + b


def kv_num(k, fmt, typ, v):
    return struct.pack("<Q", len(k)) + k.encode() + struct.pack("<I" + fmt, typ, v)


def kv_arr(k, typ, vals):
    out = struct.pack("<Q", len(k)) + k.encode() + struct.pack("<IIQ", 9, typ, len(vals))
    if typ == 8:
        return out + b"".join(struct.pack("<Q", len(s.encode())) + s.encode() for s in vals)
    return out + np.asarray(vals, dtype={6: "<f4", 5: "<i4"}[typ]).tobytes()


def pack_i2s(t, scale):
    """I2_S: 128-element blocks of 32 bytes, element j at byte j % 32, bits 6 - 2 (j / 32); code t + 1; f32 scale."""
    codes = (t.reshape(-1, 4, 32) + 1).astype(np.uint8)  # [block, j / 32, j % 32]
    b = (codes[:, 0] << 6) | (codes[:, 1] << 4) | (codes[:, 2] << 2) | codes[:, 3]
    return b.tobytes() + struct.pack("<f", scale) + b"\0" * 28


def pack_tq2(t, scale):
    """TQ2_0: 256-element blocks: qs[64] (element 128 h + 32 l + m at byte 32 h + m, bits 2 l), fp16 d."""
    codes = (t.reshape(-1, 2, 4, 32) + 1).astype(np.uint8)  # [block, h, l, m]
    qs = codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) | (codes[:, :, 3] << 6)
    d = np.full((qs.shape[0], 1), scale, dtype="<f2").view(np.uint8)
    return np.concatenate([qs.reshape(-1, 64), d], axis=1).tobytes()


def write_gguf(path, model, tokens, merges, ternary):
    c = model.c
    a = "bitnet-b1.58"
    kvs = [kv_str("general.architecture", a), kv_str("general.name", "bnc-kjv-bitnet-b1.58"),
           kv_num(a + ".context_length", "I", 4, c.ctx), kv_num(a + ".embedding_length", "I", 4, c.embd),
           kv_num(a + ".block_count", "I", 4, c.layers), kv_num(a + ".feed_forward_length", "I", 4, c.ff),
           kv_num(a + ".attention.head_count", "I", 4, c.heads), kv_num(a + ".attention.head_count_kv", "I", 4, c.kv_heads),
           kv_num(a + ".rope.freq_base", "f", 6, c.rope_base), kv_num(a + ".attention.layer_norm_rms_epsilon", "f", 6, c.eps),
           kv_num(a + ".rope.dimension_count", "I", 4, c.head_dim), kv_num(a + ".vocab_size", "I", 4, c.vocab),
           kv_str("tokenizer.ggml.model", "gpt2"), kv_str("tokenizer.ggml.pre", "llama-bpe"),
           kv_arr("tokenizer.ggml.tokens", 8, tokens),
           kv_arr("tokenizer.ggml.token_type", 5, [3 if t in SPECIALS else 1 for t in tokens]),
           kv_arr("tokenizer.ggml.merges", 8, merges),
           kv_num("tokenizer.ggml.bos_token_id", "I", 4, tokens.index(SPECIALS[0])),
           kv_num("tokenizer.ggml.eos_token_id", "I", 4, tokens.index(SPECIALS[1])),
           kv_num("tokenizer.ggml.add_bos_token", "B", 7, 0)]
    tensors = []  # (name, dims innermost first, ggml type, bytes)

    def f32(name, t):
        tensors.append((name, [t.numel()], 0, t.detach().float().cpu().numpy().astype("<f4").tobytes()))

    def tern(name, lin):
        t, m = weight_quant(lin.weight.detach().float())
        t = t.cpu().numpy().astype(np.int8)
        data = pack_i2s(t, float(m)) if ternary == "i2_s" else pack_tq2(t, float(m))
        tensors.append((name, [lin.in_features, lin.out_features], 36 if ternary == "i2_s" else 35, data))

    e = model.embd.weight.detach().cpu().numpy().astype("<f2")
    tensors.append(("token_embd.weight", [c.embd, c.vocab], 1, e.tobytes()))
    f32("output_norm.weight", model.norm.weight)
    for i, L in enumerate(model.layers):
        p = "blk.%d." % i
        f32(p + "attn_norm.weight", L.attn_norm.weight)
        f32(p + "attn_sub_norm.weight", L.attn_sub_norm.weight)
        f32(p + "ffn_norm.weight", L.ffn_norm.weight)
        f32(p + "ffn_sub_norm.weight", L.ffn_sub_norm.weight)
        for n, lin in [("attn_q", L.q), ("attn_k", L.k), ("attn_v", L.v), ("attn_output", L.o),
                       ("ffn_gate", L.gate), ("ffn_up", L.up), ("ffn_down", L.down)]:
            tern(p + n + ".weight", lin)
    head = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kvs)) + b"".join(kvs)
    off, infos = 0, b""
    for name, dims, typ, data in tensors:
        infos += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", typ, off)
        off = (off + len(data) + 31) // 32 * 32
    body = head + infos
    body += b"\0" * (-len(body) % 32)
    with open(path, "wb") as f:
        f.write(body)
        for _, _, _, data in tensors:
            f.write(data + b"\0" * (-len(data) % 32))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--steps", type=int, default=600)  # held-out perplexity: 54.8 at 600 steps, 72 at 900, 462 at 2000 (memorized)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.time()

    train_path, held_path = os.path.join(args.data, "train.txt"), os.path.join(args.data, "heldout.txt")
    tok = train_tokenizer(train_path, args.vocab)
    tokens, merges = vocab_and_merges(tok)
    train_ids = tok.encode(open(train_path, encoding="utf-8").read()).ids
    held_text = open(held_path, encoding="utf-8").read()
    held_ids = tok.encode(held_text).ids
    print("tokenizer: %d tokens, %d merges; train %d tokens, held-out %d" % (len(tokens), len(merges), len(train_ids), len(held_ids)), flush=True)

    c = Config(len(tokens))
    model = Model(c).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    print("model: %.1f M parameters" % (n_params / 1e6), flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    data = torch.tensor(train_ids, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    warm = 100
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        start = torch.randint(0, len(train_ids) - c.ctx - 1, (args.batch,), device="cuda", generator=gen)
        idx = start[:, None] + torch.arange(c.ctx + 1, device="cuda")[None, :]
        batch = data[idx]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, c.vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print("step %5d  loss %.4f  lr %.2e  %.0f s" % (step, loss.item(), lr, time.time() - t0), flush=True)

    model.eval()
    ppl, ppl_err, n_scored = perplexity(model, held_ids, c.ctx)
    prompt = "And God said,"
    prompt_ids = tok.encode(prompt).ids
    cont = greedy(model, prompt_ids, 32)
    print("held-out perplexity %.4f +- %.4f over %d tokens" % (ppl, ppl_err, n_scored), flush=True)
    print("greedy: %r" % (prompt + tok.decode(cont)), flush=True)

    for ternary in ("i2_s", "tq2_0"):
        write_gguf(os.path.join(args.out, "bitnet-kjv-%s.gguf" % ternary), model, tokens, merges, ternary)
    np.asarray(held_ids, dtype="<i4").tofile(os.path.join(args.out, "heldout.tokens"))
    ref = {"seed": args.seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "vocab": len(tokens),
           "parameters": n_params, "final_train_loss": loss.item(),
           "heldout_perplexity": ppl, "heldout_perplexity_stderr": ppl_err, "heldout_scored_tokens": n_scored,
           "context": c.ctx, "perplexity_method": "non-overlapping windows of context tokens, no BOS; every token but a window's first is scored",
           "greedy_prompt": prompt, "greedy_prompt_ids": prompt_ids, "greedy_ids": cont,
           "greedy_text": tok.decode(cont), "train_seconds": time.time() - t0,
           "torch": torch.__version__, "device": torch.cuda.get_device_name()}
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    tok.save(os.path.join(args.out, "tokenizer.json"))


if __name__ == "__main__":
    main()
