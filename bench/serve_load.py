"""A load test for an OpenAI-style completions server (bnc serve, llama-server): C clients at once, each
sending R requests one after another (prompt of W words, max_tokens N, greedy, streamed so the time to
first token and between tokens are seen). Prints aggregate generated tokens/s, requests/s, the p50 / p95
/ p99 of the time to first token and between tokens, a request's p50 / p95 and the errors (which must be
0). Standard library only.

usage: serve_load.py PORT [-c CLIENTS] [-r REQUESTS] [-n TOKENS] [-w WORDS]"""
import argparse
import http.client
import json
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("-c", type=int, default=8)
ap.add_argument("-r", type=int, default=4)
ap.add_argument("-n", type=int, default=64)
ap.add_argument("-w", type=int, default=32)
a = ap.parse_args()

words = "and the lord said unto them behold i send you forth as sheep in the midst of wolves be ye therefore".split()
lock = threading.Lock()
ttft, total, gaps, tokens, errors = [], [], [], [0], [0]


def client(k):
    for i in range(a.r):
        prompt = " ".join(words[(k * 7 + i * 3 + j) % len(words)] for j in range(a.w))
        body = json.dumps({"prompt": prompt, "max_tokens": a.n, "temperature": 0, "stream": True,
                           "ignore_eos": True, "n_predict": a.n})
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=600)
        t0 = time.time()
        c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        first, n, last, mine = None, 0, None, []
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("choices") and ev["choices"][0].get("text"):
                now = time.time()
                n += 1
                first = first or now
                if last is not None:
                    mine.append(now - last)
                last = now
            if "usage" in ev and ev["usage"]:
                n = ev["usage"].get("completion_tokens", n)
        c.close()
        with lock:
            if r.status != 200 or first is None:
                errors[0] += 1
                continue
            ttft.append(first - t0)
            gaps.extend(mine)
            total.append(time.time() - t0)
            tokens[0] += n


t0 = time.time()
ts = [threading.Thread(target=client, args=(k,)) for k in range(a.c)]
for t in ts:
    t.start()
for t in ts:
    t.join()
wall = time.time() - t0


def pct(x, p):
    x = sorted(x)
    return x[min(len(x) - 1, int(p * len(x)))] if x else float("nan")


print("%d clients x %d requests, %d tokens each: %.1f generated tokens/s, %.2f requests/s; first token p50 %.3f "
      "p95 %.3f p99 %.3f s; between tokens p50 %.1f p95 %.1f p99 %.1f ms; request p50 %.2f p95 %.2f s; %d errors; %.1f s"
      % (a.c, a.r, a.n, tokens[0] / wall, len(total) / wall, pct(ttft, .5), pct(ttft, .95), pct(ttft, .99),
         1e3 * pct(gaps, .5), 1e3 * pct(gaps, .95), 1e3 * pct(gaps, .99), pct(total, .5), pct(total, .95), errors[0],
         wall))
