#!/usr/bin/env python3
"""Writes llama-groups-pq2_0.gguf: llama-groups.gguf (make.py's, transformers' weights) with every TQ2_0
tensor re-encoded as PQ2_0 (type 142, PrismML's block_pq2_0: f16 d, then 32 bytes of 2-bit codes, element
j at bits 2 (j % 4) of byte j / 4, 128 elements a block), each 256-block of TQ2_0 as two 128-blocks with
its d. The same numbers, so transformers' llama-groups.logits are its reference too. Plain Python: no
bnc, no numpy.   usage: python3 make_pq2.py   (in tests/data/hf)"""
import struct

src = open("llama-groups.gguf", "rb").read()
pos = 0


def take(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, src, pos)
    pos += struct.calcsize("<" + fmt)
    return v[0] if len(v) == 1 else v


def string():
    global pos
    n = take("Q")
    s = src[pos:pos + n]
    pos += n
    return s


SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def skip_value(t):
    global pos
    if t == 8: string()
    elif t == 9:
        et, n = take("I"), take("Q")
        for _ in range(n): skip_value(et)
    else: pos += SIZES[t]


assert take("I") == 0x46554747 and take("I") == 3
n_t, n_kv = take("Q"), take("Q")
kv_start = pos
align = 32
for _ in range(n_kv):
    k = string()
    t = take("I")
    if k == b"general.alignment": align = struct.unpack_from("<I", src, pos)[0]
    skip_value(t)
kv_bytes = src[kv_start:pos]
infos = []
for _ in range(n_t):
    name = string()
    nd = take("I")
    dims = [take("Q") for _ in range(nd)]
    infos.append([name, dims, take("I"), take("Q")])
data0 = (pos + align - 1) // align * align


def nbytes(t, n):
    return {0: 4 * n, 1: 2 * n, 35: n // 256 * 66, 142: n // 128 * 34}[t]


def tq2_to_pq2(raw, n):
    out = bytearray()
    for b in range(n // 256):
        blk = raw[b * 66:(b + 1) * 66]
        qs, d = blk[:64], blk[64:66]
        codes = []
        for j in (0, 32):  # TQ2_0: for each half, shifts 0..3, bytes j..j+31
            for l in range(4):
                codes += [(qs[j + m] >> (2 * l)) & 3 for m in range(32)]
        for h in range(2):
            c = codes[h * 128:(h + 1) * 128]
            out += d + bytes(c[4 * i] | c[4 * i + 1] << 2 | c[4 * i + 2] << 4 | c[4 * i + 3] << 6 for i in range(32))
    return bytes(out)


tensors = []
for name, dims, t, off in infos:
    n = 1
    for d in dims: n *= d
    raw = src[data0 + off:data0 + off + nbytes(t, n)]
    if t == 35: t, raw = 142, tq2_to_pq2(raw, n)
    tensors.append((name, dims, t, raw))

head = struct.pack("<IIQQ", 0x46554747, 3, n_t, n_kv) + kv_bytes
data, off = b"", 0
for name, dims, t, raw in tensors:
    head += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
    head += struct.pack("<IQ", t, off)
    data += raw + b"\0" * ((-len(raw)) % align)
    off = len(data)
head += b"\0" * ((-len(head)) % align)
open("llama-groups-pq2_0.gguf", "wb").write(head + data)
print("wrote llama-groups-pq2_0.gguf:", sum(1 for x in tensors if x[2] == 142), "PQ2_0 tensors")
