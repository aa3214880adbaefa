#!/usr/bin/env python3
"""Makes the Hugging Face test models under tests/data/hf/ and their references,
with Hugging Face transformers and tokenizers (never with bnc):

  <case>/            a save_pretrained-style directory: config.json, safetensors
                     (sharded for qwen3), tokenizer.json, tokenizer_config.json
  <case>.logits      float32 [12 x vocab]: transformers' logits (eager, float32,
                     CPU) for the token ids TOKENS, read from the directory
  <case>.gguf        the same weights as a GGUF file written here (llama.cpp's
                     names and q/k permutation, TQ2_0 or I2_S); llama-groups has
                     only a GGUF: TQ2_0 blocks with their own scales
  tokens.json        ids the tokenizers library gives TEXT, per tokenizer

Run: python3 make.py OUTDIR   (on the lent GPU machine; CPU is enough)."""
import json, os, struct, sys

os.environ["TORCHDYNAMO_DISABLE"] = "1"  # eager, as written: no compiled kernels
import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

OUT = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26]
TEXT = ("<|begin_of_text|>In the beginning God created 12345 heavens; it's   the EARTH!\n\n"
        "  \u00dcber caf\u00e9 \u65e5\u672c\u8a9e \U0001F642 <|im_start|>user\nhi<|im_end|> 7 77 777 7777\ttab \r\n end")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                   "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
CHATML_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                   "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|im_start|>", "<|im_end|>"]

torch.manual_seed(1234)
lines = open(os.path.join(HERE, "../../../examples/tiny-model/heldout.txt"), encoding="utf-8").read().splitlines()


def make_tokenizer(regex, vocab):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, tr)
    return tok


TOKS = {"llama3": make_tokenizer(LLAMA3_RE, 600), "qwen2": make_tokenizer(QWEN2_RE, 520)}
json.dump({k: t.encode(TEXT, add_special_tokens=False).ids for k, t in TOKS.items()} | {"text": TEXT},
          open(os.path.join(OUT, "tokens.json"), "w"), indent=0, ensure_ascii=False)


def ternarize(w, group=None):
    """Ternary codes and the scale(s) d (fp16-representable), with w ~ t * d."""
    if group is None:
        d = torch.tensor(w.abs().mean().item()).half().float()
        return (w / d).round().clamp(-1, 1), d
    g = w.reshape(w.shape[0], -1, group)
    d = g.abs().mean(dim=-1, keepdim=True).half().float()
    return (g / d).round().clamp(-1, 1).reshape(w.shape), d.reshape(w.shape[0], -1)


# ---- a minimal GGUF writer (version 3), per ../../../../shared/spec/bitnet-gguf.md
def gguf_write(path, kvs, tensors):
    def s(x):
        b = x.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def val(v):
        if isinstance(v, bool): return struct.pack("<I", 7) + struct.pack("<B", v)
        if isinstance(v, int): return struct.pack("<I", 4) + struct.pack("<I", v)
        if isinstance(v, float): return struct.pack("<I", 6) + struct.pack("<f", v)
        if isinstance(v, str): return struct.pack("<I", 8) + s(v)
        kind, items = v  # ("str"|"i32"|"f32", list)
        code = {"str": 8, "i32": 5, "f32": 6}[kind]
        body = b"".join(s(x) if kind == "str" else struct.pack("<i" if kind == "i32" else "<f", x) for x in items)
        return struct.pack("<I", 9) + struct.pack("<IQ", code, len(items)) + body

    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    head += b"".join(s(k) + val(v) for k, v in kvs)
    data, off = b"", 0
    for name, ty, dims, raw in tensors:
        head += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        head += struct.pack("<IQ", ty, off)
        data += raw + b"\0" * ((-len(raw)) % 32)
        off = len(data)
    head += b"\0" * ((-len(head)) % 32)
    open(path, "wb").write(head + data)


def tq2_0(t, d):
    """TQ2_0 (id 35): t [N, K] trits, d [N, K/256] block scales."""
    N, K = t.shape
    c = (t + 1).to(torch.uint8).reshape(N, K // 256, 2, 4, 32).numpy()  # block, half, l, m
    qs = (c[:, :, :, 0] | c[:, :, :, 1] << 2 | c[:, :, :, 2] << 4 | c[:, :, :, 3] << 6).reshape(N, K // 256, 64)
    dd = d.reshape(N, K // 256, 1).half().numpy().view(np.uint8).reshape(N, K // 256, 2)
    return np.concatenate([qs, dd], axis=2).astype(np.uint8).tobytes()


def pq2_0(t, d):
    """PQ2_0 (id 142, PrismML's llama.cpp fork: block_pq2_0): per 128 elements f16 d, then 32 bytes of
    2-bit codes c = trit + 1, element j at bits 2 (j % 4) of byte j / 4. d [N, K/128]."""
    N, K = t.shape
    c = (t + 1).to(torch.uint8).reshape(N, K // 128, 32, 4).numpy()
    qs = (c[..., 0] | c[..., 1] << 2 | c[..., 2] << 4 | c[..., 3] << 6).astype(np.uint8)
    dd = d.reshape(N, K // 128, 1).half().numpy().view(np.uint8).reshape(N, K // 128, 2)
    return np.concatenate([dd, qs], axis=2).astype(np.uint8).tobytes()


def i2_s(t, scale):
    """I2_S (id 36): 128-element blocks in 32 bytes, element j at byte j%32, bits 6-2(j/32); f32 scale after."""
    c = (t.flatten() + 1).to(torch.uint8).reshape(-1, 4, 32).numpy()
    q = (c[:, 0] << 6 | c[:, 1] << 4 | c[:, 2] << 2 | c[:, 3]).astype(np.uint8).tobytes()
    return q + struct.pack("<f", scale) + b"\0" * 28


def f32(x):
    return x.detach().float().contiguous().numpy().tobytes()


def permute(w, heads):  # llama.cpp's convert_hf_to_gguf: rotate pairs interleaved
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tok_kvs(tok, pre, template):
    vocab = tok.get_vocab()
    inv = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in inv] == list(range(len(inv)))
    mj = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else m[0] + " " + m[1] for m in mj]
    return [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", pre),
            ("tokenizer.ggml.tokens", ("str", [t for t, _ in inv])),
            ("tokenizer.ggml.token_type", ("i32", [3 if t in SPECIALS else 1 for t, _ in inv])),
            ("tokenizer.ggml.merges", ("str", merges)),
            ("tokenizer.ggml.bos_token_id", vocab["<|begin_of_text|>"]),
            ("tokenizer.ggml.eos_token_id", vocab["<|eot_id|>" if pre == "llama-bpe" else "<|im_end|>"]),
            ("tokenizer.chat_template", template)]


def save_dir(case, model, cfg_extra, tokname, template, linear_fmt, dtype, shards=1, group=None):
    """Writes the directory; returns {name: (trits, scale)} of the ternary linears."""
    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
    sd, tern = {}, {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_word_embeddings: continue
        linear = name.endswith("_proj.weight") and "lm_head" not in name
        if linear:
            t, sc = ternarize(p.detach().float(), group)
            tern[name] = (t, sc)
            if linear_fmt == "packed":
                sd[name] = transformers.integrations.bitnet.pack_weights(t.clone())
                sd[name[:-len("weight")] + "weight_scale"] = torch.tensor([1.0 / sc.item()]).to(dtype)
            elif linear_fmt == "float-grouped":
                sd[name] = (t.reshape(t.shape[0], -1, group) * sc.unsqueeze(-1)).reshape(t.shape).to(dtype)
                sd[name[:-len("weight")] + "weight_scale"] = torch.tensor([1.0], dtype=dtype)
            else:  # master weights, ternarized by whoever reads them
                sd[name] = p.detach().to(dtype).contiguous()
        else:
            sd[name] = p.detach().to(dtype).contiguous()
    names = sorted(sd)
    if shards == 1:
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    else:
        wm = {}
        for i in range(shards):
            part = {n: sd[n] for n in names[i::shards]}
            fn = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file(part, os.path.join(d, fn), metadata={"format": "pt"})
            wm.update({n: fn for n in part})
        json.dump({"metadata": {"total_size": sum(v.numel() * v.element_size() for v in sd.values())},
                   "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)
    model.config.save_pretrained(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg.update(cfg_extra)
    cfg["torch_dtype"] = cfg["dtype"] = str(dtype).replace("torch.", "")
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    tok = TOKS[tokname]
    tok.save(os.path.join(d, "tokenizer.json"))
    json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>" if tokname == "llama3" else "<|im_end|>",
               "chat_template": template, "tokenizer_class": "PreTrainedTokenizerFast"},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    return d, tern


def reference(case, d):
    m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    print(case, "loaded as", sorted({str(p.dtype) for p in m.state_dict().values()}))
    for x in m.modules():  # BitLinear keeps the checkpoint's dtype for its matmul: bf16 sums are not exact
        if hasattr(x, "dtype") and isinstance(x, transformers.integrations.bitnet.BitLinear):
            print(case, "BitLinear computes in", x.dtype, "-> float32") if x.dtype != torch.float32 else None
            x.dtype = torch.float32
    m.eval()
    print(case, type(m).__name__, {type(x).__name__ for x in m.modules() if "Linear" in type(x).__name__})
    with torch.no_grad():
        lg = m(torch.tensor([TOKENS])).logits[0].float().numpy()
    lg.astype("<f4").tofile(os.path.join(OUT, case + ".logits"))
    print(case, "logits", lg.shape, "range", float(lg.max() - lg.min()), "top1", lg.argmax(-1).tolist())


BITNET_Q = {"quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}}
ONLINE_Q = {"quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}}
GROUPS_Q = {"quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "offline"}}


def hf_to_gguf(path, arch, model, tern, tokname, template, fmt, heads, kv_heads, extra_kv=()):
    c = model.config
    kv = [("general.architecture", arch), ("general.alignment", 32),
          (f"{arch}.context_length", c.max_position_embeddings), (f"{arch}.embedding_length", c.hidden_size),
          (f"{arch}.block_count", c.num_hidden_layers), (f"{arch}.feed_forward_length", c.intermediate_size),
          (f"{arch}.attention.head_count", heads), (f"{arch}.attention.head_count_kv", kv_heads),
          (f"{arch}.rope.freq_base", float(c.rope_parameters["rope_theta"] if hasattr(c, "rope_parameters") and c.rope_parameters else c.rope_theta)),
          (f"{arch}.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps))] + list(extra_kv)
    kv += tok_kvs(TOKS[tokname], "llama-bpe" if tokname == "llama3" else "qwen2", template)
    sd = model.state_dict()
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "attn_sub_norm": "attn_sub_norm",
             "ffn_sub_norm": "ffn_sub_norm", "q_norm": "attn_q_norm", "k_norm": "attn_k_norm"}
    tensors = [("token_embd.weight", 0, [c.hidden_size, c.vocab_size], f32(sd["model.embed_tokens.weight"]))]
    for name, p in sd.items():
        parts = name.split(".")
        if parts[0] != "model" or parts[1] != "layers": continue
        L, key = parts[2], parts[-2]
        gname = f"blk.{L}.{names[key]}.weight"
        if name in tern:
            t, sc = tern[name]
            if arch == "llama" and key in ("q_proj", "k_proj"):
                t = permute(t, heads if key == "q_proj" else kv_heads)
                sc = permute(sc, heads if key == "q_proj" else kv_heads) if sc.dim() == 2 else sc
            if fmt == "TQ2_0":
                scb = sc if sc.dim() == 2 else torch.full((t.shape[0], t.shape[1] // 256), sc.item())
                tensors.append((gname, 35, [t.shape[1], t.shape[0]], tq2_0(t, scb)))
            elif fmt == "PQ2_0":
                tensors.append((gname, 142, [t.shape[1], t.shape[0]], pq2_0(t, sc)))
            else:
                tensors.append((gname, 36, [t.shape[1], t.shape[0]], i2_s(t, float(np.float32(sc.item())))))
        else:
            tensors.append((gname, 0, list(reversed(p.shape)), f32(p)))
    tensors.append(("output_norm.weight", 0, [c.hidden_size], f32(sd["model.norm.weight"])))
    if not c.tie_word_embeddings:
        tensors.append(("output.weight", 0, [c.hidden_size, c.vocab_size], f32(sd["lm_head.weight"])))
    gguf_write(path, kv, tensors)


common = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=4)
V3, V2 = TOKS["llama3"].get_vocab_size(), TOKS["qwen2"].get_vocab_size()
print("vocab sizes", V3, V2, "transformers", transformers.__version__, "torch", torch.__version__)

# 1. BitNet b1.58 2B-4T's format: packed 2-bit linears, bf16 weight_scale and tensors, tied embedding
bc = transformers.BitNetConfig(vocab_size=V3, intermediate_size=768, rope_theta=500000.0, tie_word_embeddings=True,
                               hidden_act="relu2", **common)
bm = transformers.BitNetForCausalLM(bc)


def random_norms(model, seed):
    """Norm weights away from 1 (their own generator): with unit norms and bf16 embeddings, values
    whose ratio is exactly 1/2 are common, and activation quantization meets exact ties (x·s = 63.5)
    that the last bit of either side's RMSNorm decides."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n: p.copy_(torch.rand(p.shape, generator=g) + 0.5)


random_norms(bm, 7)
d, tern = save_dir("bitnet-packed", bm, BITNET_Q, "llama3", LLAMA3_TEMPLATE, "packed", torch.bfloat16)
reference("bitnet-packed", d)
bm_loaded = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
bm16 = transformers.BitNetForCausalLM(bc)  # the bf16-rounded float tensors, for the GGUF
bm16.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in bm.state_dict().items()})
tern16 = {k: (t, torch.tensor(1.0 / torch.tensor([1.0 / s.item()]).to(torch.bfloat16).float().item())) for k, (t, s) in tern.items()}
hf_to_gguf(os.path.join(OUT, "bitnet-packed.gguf"), "bitnet-b1.58", bm16, tern16, "llama3", LLAMA3_TEMPLATE, "I2_S", 4, 2)

# 2. bf16 master weights, ternarized with absmean by the reader (transformers: AutoBitLinear, online)
bm2 = transformers.BitNetForCausalLM(bc)
random_norms(bm2, 8)
d, _ = save_dir("bitnet-master", bm2, ONLINE_Q, "llama3", LLAMA3_TEMPLATE, "master", torch.bfloat16)
reference("bitnet-master", d)

# 3. Llama with the bitnet quantization config: packed, f32, separate output
lc = transformers.LlamaConfig(vocab_size=V3, intermediate_size=512, rope_theta=500000.0, tie_word_embeddings=False, **common)
lm = transformers.LlamaForCausalLM(lc)
d, tern = save_dir("llama-packed", lm, BITNET_Q, "llama3", LLAMA3_TEMPLATE, "packed", torch.float32)
reference("llama-packed", d)
hf_to_gguf(os.path.join(OUT, "llama-packed.gguf"), "llama", lm, tern, "llama3", LLAMA3_TEMPLATE, "TQ2_0", 4, 2,
           [("llama.rope.dimension_count", 64), ("llama.vocab_size", V3)])

# 4. Qwen3: per-head q/k RMSNorm, head_dim 64 with 8 heads (q is 512 wide, hidden 256), tied, two shards
qc = transformers.Qwen3Config(vocab_size=V2, intermediate_size=512, rope_theta=1000000.0, tie_word_embeddings=True,
                              head_dim=64, hidden_size=256, num_hidden_layers=2, num_attention_heads=8,
                              num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-6,
                              bos_token_id=0, eos_token_id=6)
qm = transformers.Qwen3ForCausalLM(qc)
with torch.no_grad():  # norms away from 1, so that a missing one shows
    for n, p in qm.named_parameters():
        if "norm" in n: p.uniform_(0.5, 1.5)
    qm.model.embed_tokens.weight.mul_(0.2)  # else the tied embedding's own token wins every position
d, tern = save_dir("qwen3-packed", qm, BITNET_Q, "qwen2", CHATML_TEMPLATE, "packed", torch.float32, shards=2)
reference("qwen3-packed", d)
hf_to_gguf(os.path.join(OUT, "qwen3-packed.gguf"), "qwen3", qm, tern, "qwen2", CHATML_TEMPLATE, "I2_S", 8, 4,
           [("qwen3.attention.key_length", 64), ("qwen3.attention.value_length", 64)])

# 5. per-group scales (one per 256-block, differing): transformers reads float weights t*d_g (AutoBitLinear
#    offline, weight_scale 1); bnc reads the TQ2_0 GGUF of the same numbers
gm = transformers.LlamaForCausalLM(lc)
d, tern = save_dir("llama-groups", gm, GROUPS_Q, "llama3", LLAMA3_TEMPLATE, "float-grouped", torch.float32, group=256)
reference("llama-groups", d)
hf_to_gguf(os.path.join(OUT, "llama-groups.gguf"), "llama", gm, tern, "llama3", LLAMA3_TEMPLATE, "TQ2_0", 4, 2)
# 6. Ternary-Bonsai's format: qwen3 with a scale per 128 weights (PQ2_0); transformers reads the float weights
#    t*d_g (AutoBitLinear offline, weight_scale 1), bnc the PQ2_0 GGUF of the same numbers
bq = transformers.Qwen3ForCausalLM(qc)
with torch.no_grad():
    for n, p in bq.named_parameters():
        if "norm" in n: p.uniform_(0.5, 1.5)
    bq.model.embed_tokens.weight.mul_(0.2)
d, tern = save_dir("qwen3-pq2_0", bq, GROUPS_Q, "qwen2", CHATML_TEMPLATE, "float-grouped", torch.float32, group=128)
reference("qwen3-pq2_0", d)
hf_to_gguf(os.path.join(OUT, "qwen3-pq2_0.gguf"), "qwen3", bq, tern, "qwen2", CHATML_TEMPLATE, "PQ2_0", 8, 4,
           [("qwen3.attention.key_length", 64), ("qwen3.attention.value_length", 64)])

with open(os.path.join(OUT, "keys.txt"), "w") as f:
    for m in (bm, lm, qm):
        f.write("\n".join(f"{k} {tuple(v.shape)}" for k, v in m.state_dict().items()) + "\n\n")
