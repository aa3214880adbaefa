#!/usr/bin/env python3
"""Writes the malformed-GGUF corpus of tests/bad/ and its manifest gguf.expect.

Each file is a small GGUF written here, independently of bnc's writer, with
one defect. gguf.expect lists `file<TAB>substring`: loading the file (read +
import) must fail with an error message containing the substring.
Run from anywhere: python3 tests/bad/make_gguf_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack('<Q', len(b)) + b


def kv(key, t, val, et=None):
    out = s(key) + struct.pack('<I', t)
    if t == STR:
        return out + s(val)
    if t == ARR:
        out += struct.pack('<IQ', et, len(val))
        for v in val:
            out += s(v) if et == STR else struct.pack('<' + {U32: 'I', I32: 'i', F32: 'f'}[et], v)
        return out
    return out + struct.pack('<' + {U32: 'I', I32: 'i', F32: 'f', U64: 'Q', BOOL: 'B'}[t], val)


def gguf(kvs, tensors, version=3, align=32, n_tensors=None, n_kv=None):
    """tensors: list of (name, dims, type, data bytes, offset or None)."""
    head = struct.pack('<IIQQ', 0x46554747, version,
                       len(tensors) if n_tensors is None else n_tensors,
                       len(kvs) if n_kv is None else n_kv) + b''.join(kvs)
    infos, blobs, off = b'', [], 0
    for name, dims, t, data, fixed in tensors:
        o = off if fixed is None else fixed
        infos += s(name) + struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', d) for d in dims)
        infos += struct.pack('<IQ', t, o)
        if o < 1 << 20:  # an offset past the end keeps its data out of the file
            blobs.append((o, data))
        off = (o + len(data) + align - 1) // align * align
    body = head + infos
    body += b'\0' * ((-len(body)) % align)
    data = bytearray()
    for o, blob in blobs:
        if len(data) < o + len(blob):
            data.extend(b'\0' * (o + len(blob) - len(data)))
        data[o:o + len(blob)] = blob
    return body + bytes(data)


E, F, V = 128, 256, 260

def i2s(k, n, scale=0.5):
    codes = bytearray([0x99]) * (k * n // 4)  # codes 2,1,2,1: +1, 0, +1, 0
    return bytes(codes) + struct.pack('<f', scale) + b'\0' * 28


def f32(vals):
    return struct.pack('<%df' % len(vals), *vals)


def model(arch='bitnet', drop=None, override=None, extra_kv=(), scale=0.5, keys=None):
    """A whole 1-layer model; drop removes a tensor, override replaces one."""
    toks = ['<unk>', '<s>', '</s>'] + ['<0x%02X>' % i for i in range(256)] + ['\u2581']
    types = [2, 3, 3] + [6] * 256 + [1]
    kvs = [kv('general.architecture', STR, arch)]
    hp = dict(context_length=64, embedding_length=E, block_count=1, feed_forward_length=F,
              **{'attention.head_count': 2, 'attention.head_count_kv': 2})
    if keys:
        hp.update(keys)
    for k, v in hp.items():
        if v is not None:
            kvs.append(kv('%s.%s' % (arch, k), U32, v))
    kvs += [kv(arch + '.rope.freq_base', F32, 10000.0), kv(arch + '.attention.layer_norm_rms_epsilon', F32, 1e-5),
            kv('tokenizer.ggml.model', STR, 'llama'), kv('tokenizer.ggml.tokens', ARR, toks, STR),
            kv('tokenizer.ggml.scores', ARR, [0.0] * V, F32), kv('tokenizer.ggml.token_type', ARR, types, I32),
            kv('tokenizer.ggml.bos_token_id', U32, 1), kv('tokenizer.ggml.eos_token_id', U32, 2)]
    kvs += list(extra_kv)
    t = [('token_embd.weight', [E, V], 1, struct.pack('<%de' % (E * V), *([0.01] * (E * V))), None),
         ('output_norm.weight', [E], 0, f32([1.0] * E), None)]
    for nm, n in [('attn_norm', E), ('attn_sub_norm', E), ('ffn_norm', E), ('ffn_sub_norm', F)]:
        t.append(('blk.0.%s.weight' % nm, [n], 0, f32([1.0] * n), None))
    for nm, k, n in [('attn_q', E, E), ('attn_k', E, E), ('attn_v', E, E), ('attn_output', E, E),
                     ('ffn_gate', E, F), ('ffn_up', E, F), ('ffn_down', F, E)]:
        t.append(('blk.0.%s.weight' % nm, [k, n], 36, i2s(k, n, scale), None))
    t = [x for x in t if x[0] != drop]
    if override:
        t = [override if x[0] == override[0] else x for x in t]
    return gguf(kvs, t)


def small(**kw):
    """A file with one tensor and one key, for container-level defects."""
    return gguf([kv('general.architecture', STR, 'bitnet')], [('a', [8], 0, f32([1.0] * 8), None)], **kw)


corpus = {}
good = small()
corpus['bad-magic.gguf'] = (b'GGUX' + good[4:], 'not GGUF')
corpus['version-1.gguf'] = (small(version=1), 'version 1 unsupported')
corpus['version-99.gguf'] = (small(version=99), 'version 99 unsupported')
corpus['truncated-header.gguf'] = (good[:20], 'too short')
corpus['truncated-kv.gguf'] = (good[:40], 'truncated')
corpus['truncated-data.gguf'] = (good[:-8], 'past the end')
corpus['absurd-tensor-count.gguf'] = (small(n_tensors=1 << 60), 'tensor_count')
corpus['absurd-kv-count.gguf'] = (small(n_kv=1 << 60), 'kv_count')
huge_str = struct.pack('<IIQQ', 0x46554747, 3, 0, 1) + struct.pack('<Q', 1 << 62) + b'x' * 16
corpus['huge-string-length.gguf'] = (huge_str, 'truncated')
bad_type = gguf([s('k') + struct.pack('<I', 77) + b'\0' * 8], [])
corpus['unknown-value-type.gguf'] = (bad_type, 'unknown value type 77')
arr = gguf([s('k') + struct.pack('<IIQ', ARR, U32, 1 << 61)], [])
corpus['absurd-array-count.gguf'] = (arr, 'array count')
corpus['unknown-tensor-type.gguf'] = (gguf([], [('a', [8], 99, f32([1.0] * 8), None)]), 'unknown or unsupported tensor type 99')
corpus['zero-dim.gguf'] = (gguf([], [('a', [8, 0], 0, b'', None)]), 'dim 1 = 0')
corpus['too-many-dims.gguf'] = (gguf([], [('a', [1, 1, 1, 1, 8], 0, f32([1.0] * 8), None)]), 'n_dims 5')
corpus['overflow-dims.gguf'] = (gguf([], [('a', [1 << 40, 1 << 40], 0, b'', None)]), 'overflow')
corpus['unaligned-offset.gguf'] = (gguf([], [('a', [8], 0, f32([1.0] * 8), 4)]), 'not a multiple of the alignment')
corpus['offset-past-end.gguf'] = (gguf([], [('a', [8], 0, f32([1.0] * 8), 1 << 40)]), 'past the end')
corpus['overlapping-tensors.gguf'] = (gguf([], [('a', [16], 0, f32([1.0] * 16), 0), ('b', [8], 0, f32([1.0] * 8), 32)]),
                                      'overlaps')
corpus['duplicate-tensor.gguf'] = (gguf([], [('a', [8], 0, f32([1.0] * 8), None), ('a', [8], 0, f32([1.0] * 8), None)]),
                                   "tensor 'a' appears twice")
corpus['duplicate-key.gguf'] = (gguf([kv('k', U32, 1), kv('k', U32, 2)], []), "key 'k' appears twice")
corpus['bad-alignment.gguf'] = (gguf([kv('general.alignment', U32, 24)], []), 'general.alignment')
corpus['partial-block.gguf'] = (gguf([], [('a', [100], 35, b'\0' * 66, None)]), 'whole tq2_0 blocks')
# importer-level defects on a whole model
corpus['unknown-arch.gguf'] = (model(arch='gptneox'), "general.architecture 'gptneox' is not supported")
corpus['missing-tensor.gguf'] = (model(drop='blk.0.ffn_up.weight'), "missing tensor 'blk.0.ffn_up.weight'")
corpus['wrong-shape.gguf'] = (model(override=('blk.0.attn_q.weight', [E, E // 2], 36, i2s(E, E // 2), None)),
                              "tensor 'blk.0.attn_q.weight' has shape")
corpus['float-linear.gguf'] = (model(override=('blk.0.attn_k.weight', [E, E], 0, f32([0.0] * E * E), None)),
                               "'blk.0.attn_k.weight' has type f32")
corpus['i2s-zero-scale.gguf'] = (model(scale=0.0), 'I2_S scale 0')
corpus['i2s-nan-scale.gguf'] = (model(scale=float('nan')), 'I2_S scale nan')
corpus['missing-key.gguf'] = (model(keys={'block_count': None}), "missing key 'bitnet.block_count'")
corpus['bad-head-count.gguf'] = (model(keys={'attention.head_count': 3}), 'do not divide')
corpus['zero-layers.gguf'] = (model(keys={'block_count': 0}), 'bitnet.block_count = 0 is out of range')
toks_key = kv('tokenizer.ggml.unknown_token_id', U32, 5000)
corpus['bad-token-id.gguf'] = (model(extra_kv=[toks_key]), 'tokenizer.ggml.unknown_token_id = 5000')
corpus['wrong-key-type.gguf'] = (model(extra_kv=[]).replace(b'bitnet.context_length\x04\x00\x00\x00',
                                                            b'bitnet.context_length\x06\x00\x00\x00'),
                                 "key 'bitnet.context_length' has type f32")

corpus['llama-rope-scaling.gguf'] = (model(arch='llama', extra_kv=[kv('llama.rope.scaling.type', STR, 'linear')]),
                                     "llama.rope.scaling.type = 'linear': RoPE scaling is not supported")
corpus['qwen3-value-length.gguf'] = (model(arch='qwen3', keys={'attention.key_length': 64, 'attention.value_length': 32}),
                                     'qwen3.attention.value_length 32 differs from the key length')
corpus['qwen3-missing-q-norm.gguf'] = (model(arch='qwen3'), "missing tensor 'blk.0.attn_q_norm.weight'")
corpus['llama-odd-heads.gguf'] = (model(arch='llama', override=('blk.0.attn_q.weight', [E, E - 64], 36, i2s(E, E - 64), None)),
                                  "tensor 'blk.0.attn_q.weight' has shape")

with open(os.path.join(HERE, 'gguf.expect'), 'w') as man:
    for name in sorted(corpus):
        data, expect = corpus[name]
        with open(os.path.join(HERE, name), 'wb') as fp:
            fp.write(data)
        man.write('%s\t%s\n' % (name, expect))
print('wrote %d files' % len(corpus))
