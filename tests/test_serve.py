"""bnc serve over HTTP, with the standard library only: greedy completions equal `bnc run --temp 0` bit for
bit, alone or among 15 others; streams carry the same text and end in [DONE]; bad requests get 4xx with
the field named and the server keeps serving; a client that disconnects mid-stream frees its slot; full
slots and queue give 503 with Retry-After; --api-key gives 401; SIGTERM exits 0.

usage: test_serve.py BNC MODEL.gguf"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

bnc, model = sys.argv[1], sys.argv[2]
fails = 0


def check(ok, what):
    global fails
    if not ok:
        fails += 1
        print("FAIL: " + what)


def start(*args, gguf=None, env=None):
    """bnc serve on a free port: the process, its port and its first line."""
    p = subprocess.Popen([bnc, "serve", gguf or model, "--port", "0", *args], stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, **(env or {})))
    line = p.stderr.readline()
    m = re.search(r"http://(127\.0\.0\.1|\[::1\]):(\d+)/v1", line)
    if not m:
        print("FAIL: no address in %r" % line)
        sys.exit(1)
    return p, int(m.group(2)), line


def terminate(p, what):
    p.send_signal(signal.SIGTERM)
    try:
        check(p.wait(timeout=15) == 0, "SIGTERM (%s): exit status %s" % (what, p.returncode))
    except subprocess.TimeoutExpired:
        check(False, "SIGTERM (%s): still running after 15 s" % what)
        p.kill()


def request(port, method, path, body=None, headers=None, raw=None, host="127.0.0.1"):
    c = http.client.HTTPConnection(host, port, timeout=60)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    c.request(method, path, body=data, headers=headers or {})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, text, r


def raw_post(port, body, headers=""):
    """A completion request on a bare socket, left open for the caller to read from or drop."""
    s = socket.create_connection(("127.0.0.1", port))
    data = json.dumps(body)
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
               % (headers, len(data), data)).encode())
    return s


def metrics_when(port, *needles):
    """/metrics once it holds every needle (or after 5 s)."""
    for _ in range(100):
        _, text, _ = request(port, "GET", "/metrics")
        if all(n in text for n in needles):
            break
        time.sleep(0.05)
    return text


def first_event(s):
    """Reads a raw stream until its first event has come (headers may arrive alone)."""
    got = b""
    s.settimeout(30)
    while b"data: " not in got and len(got) < 65536:
        part = s.recv(4096)
        if not part:
            break
        got += part
    return got


def run_alone(prompt, n):
    out = subprocess.run([bnc, "run", model, "-p", prompt, "-n", str(n), "--temp", "0", "--repeat-penalty", "1"],
                         capture_output=True, check=True).stdout.decode(errors="replace")  # serve gives valid UTF-8
    return out[len(prompt):-1]  # bnc run prints the prompt, the continuation, then a newline


server, port, _ = start("--parallel", "4", "--queue", "16", "-t", "2")
status, text, _ = request(port, "GET", "/health")
check(status == 200 and json.loads(text)["status"] == "ok", "health: %d %s" % (status, text))
status, text, _ = request(port, "GET", "/v1/models")
check(status == 200 and json.loads(text)["data"][0]["object"] == "model", "models: %s" % text)

# 16 prompts at once, each against bnc run's greedy text
prompts = ["In the beginning", "And God said", "The LORD is my shepherd", "Blessed are", "And it came to pass",
           "Thou shalt", "For God so loved", "Jesus wept", "Let there be light", "In my Father's house",
           "The heavens declare", "Hear, O Israel", "Behold", "Unto thee", "And the earth", "Verily I say"]
want = {p: run_alone(p, 12) for p in prompts}
got = {}


def complete(p):
    status, text, _ = request(port, "POST", "/v1/completions", {"prompt": p, "max_tokens": 12, "temperature": 0})
    got[p] = (status, text)


threads = [threading.Thread(target=complete, args=(p,)) for p in prompts]
for t in threads:
    t.start()
for t in threads:
    t.join()
for p in prompts:
    status, text = got[p]
    ok = status == 200
    body = json.loads(text) if ok else {}
    check(ok and body["choices"][0]["text"] == want[p],
          "batched %r: %s, bnc run gives %r" % (p, text[:300], want[p]))
    check(ok and body["usage"]["completion_tokens"] >= 1 and body["usage"]["prompt_tokens"] >= 1, "usage: %s" % text)
status, text, _ = request(port, "POST", "/v1/completions", {"prompt": prompts[0], "max_tokens": 12, "temperature": 0})
check(status == 200 and json.loads(text)["choices"][0]["text"] == want[prompts[0]], "alone: %s" % text)

# a stream: the same text in deltas, then the finish, then [DONE]
status, text, resp = request(port, "POST", "/v1/completions",
                             {"prompt": prompts[1], "max_tokens": 12, "temperature": 0, "stream": True})
events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
check(status == 200 and resp.getheader("Content-Type") == "text/event-stream", "stream headers")
check(events and events[-1] == "[DONE]", "stream ends in [DONE]: %r" % events[-3:])
chunks = [json.loads(e) for e in events[:-1]]
check("".join(c["choices"][0]["text"] for c in chunks) == want[prompts[1]], "stream text %r" % chunks)
check(chunks and chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop"), "stream finish")
# chat
status, text, _ = request(port, "POST", "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "Who made the heavens?"}], "max_tokens": 6})
body = json.loads(text)
check(status == 200 and body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant",
      "chat: %s" % text)
# stop strings: the text before the first
stop = want[prompts[2]][4:7]
status, text, _ = request(port, "POST", "/v1/completions",
                          {"prompt": prompts[2], "max_tokens": 12, "temperature": 0, "stop": ["zzzz", stop]})
body = json.loads(text)
check(status == 200 and body["choices"][0]["text"] == want[prompts[2]][:want[prompts[2]].index(stop)]
      and body["choices"][0]["finish_reason"] == "stop", "stop %r: %s" % (stop, text))

# bad requests: 4xx naming the problem; the server goes on
bad = [("POST", "/v1/completions", "{not json", 400, "not a JSON object"),
       ("POST", "/v1/completions", json.dumps({"prompt": 5}), 400, "'prompt' must be a string"),
       ("POST", "/v1/completions", json.dumps({"prompt": "a", "max_tokens": 0}), 400, "max_tokens"),
       ("POST", "/v1/completions", json.dumps({"prompt": "a", "max_tokens": "x"}), 400, "max_tokens"),
       ("POST", "/v1/completions", json.dumps({"prompt": "a", "temperature": -1}), 400, "temperature"),
       ("POST", "/v1/completions", json.dumps({"prompt": "a", "n": 2}), 400, "'n'"),
       ("POST", "/v1/completions", json.dumps({"prompt": "a", "logprobs": 3}), 400, "not supported"),
       ("POST", "/v1/completions", json.dumps({"prompt": "a", "stop": [1]}), 400, "stop"),
       ("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "robot", "content": "x"}]}), 400, "role"),
       ("POST", "/v1/completions", json.dumps({"prompt": "word " * 2000}), 400, "context"),
       ("POST", "/v1/completions", "x" * (1 << 21), 413, "exceeds"),
       ("GET", "/v1/completions", None, 405, "POST"),
       ("GET", "/nope", None, 404, "no endpoint")]
for method, path, raw, code, words in bad:
    status, text, _ = request(port, method, path, raw=raw)
    err = json.loads(text).get("error", {}) if text.startswith("{") else {}
    check(status == code and words in err.get("message", ""), "%s %s -> %d %s (want %d, %r)" % (
        method, path, status, text[:200], code, words))
status, _, _ = request(port, "GET", "/health")
check(status == 200, "alive after bad requests")

# a client that leaves mid-stream frees its slot
s = raw_post(port, {"prompt": "And", "max_tokens": 200, "stream": True, "temperature": 0},
             "Content-Type: application/json\r\n")
first = first_event(s)
check(b"data: " in first, "the stream began: %r" % first[:300])
s.close()
metrics = metrics_when(port, "bnc_active_slots 0", "bnc_requests_cancelled_total 1")
check("bnc_active_slots 0" in metrics and "bnc_requests_cancelled_total 1" in metrics, "after leaving: %s" % metrics)
check('bnc_http_responses_total{status="400"} 10' in metrics, "400s counted: %s" % metrics)
m = re.search(r"bnc_time_to_first_token_seconds_count (\d+)", metrics)
check(m and int(m.group(1)) >= 16 and 'bnc_inter_token_seconds_bucket{le="+Inf"}' in metrics
      and 'bnc_kernel_seconds_total{kind="attention"}' in metrics, "histograms and kernel time: %s" % metrics)

terminate(server, "first server")

# a client that leaves while its whole (not streamed) response is made cancels it (the engine pausing 20 ms a
# step, so that the tiny model's request lasts seconds)
server, port, _ = start("--parallel", "1", env={"BNC_SERVE_DELAY_US": "20000"})
s = raw_post(port, {"prompt": "And", "max_tokens": 200, "temperature": 0})
time.sleep(0.3)
s.close()
metrics = metrics_when(port, "bnc_requests_cancelled_total 1")
m = re.search(r"bnc_tokens_out_total (\d+)", metrics)
check("bnc_requests_cancelled_total 1" in metrics and "bnc_active_slots 0" in metrics and m and int(m.group(1)) < 150,
      "leaving a whole response: %s" % metrics)
terminate(server, "paused server")

# one slot, no queue, a key: 401 without it, 503 while the slot is taken
server, port, _ = start("--parallel", "1", "--queue", "0", "--api-key", "sekrit")
key = {"Authorization": "Bearer sekrit"}
status, text, _ = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 2})
check(status == 401 and "API key" in text, "no key: %d %s" % (status, text))
status, _, _ = request(port, "POST", "/v1/completions", {"prompt": "a"}, {"Authorization": "Bearer wrong"})
check(status == 401, "wrong key: %d" % status)
s = raw_post(port, {"prompt": "And", "max_tokens": 200, "stream": True}, "Authorization: Bearer sekrit\r\n")
check(b"data: " in first_event(s), "the long stream began")
status, text, resp = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 2}, key)
check(status == 503 and resp.getheader("Retry-After") == "1" and "slots" in text, "full: %d %s" % (status, text))
s.close()
for _ in range(100):
    status, text, _ = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 2}, key)
    if status == 200:
        break
    time.sleep(0.05)
check(status == 200, "the slot came back: %d %s" % (status, text))
terminate(server, "server with a key")

# the GGUF's chat template, of a synth gpt2-style model (whose vocabulary has llama3's control tokens):
# llama3's renders BOS, 5 control tokens and the pieces "user", "\n\nhi", "assistant", "\n\n" tokenized
# alone, each counted here through a completion's usage (its BOS less)
tmp = tempfile.mkdtemp()
llama3 = tmp + "/llama3.gguf"
subprocess.run([bnc, "synth", "-o", llama3, "--shape", "tiny", "--arch", "bitnet-b1.58", "--type", "i2_s",
                "--chat-template", "llama3"], check=True, capture_output=True)
server, port, line = start(gguf=llama3)
check("chat template llama3: the model's chat template" in line, "llama3 template not chosen: %r" % line)


def count(text):
    _, t, _ = request(port, "POST", "/v1/completions", {"prompt": text, "max_tokens": 1})
    return json.loads(t)["usage"]["prompt_tokens"] - 1


want_n = 1 + 5 + count("user") + count("\n\nhi") + count("assistant") + count("\n\n")
status, text, _ = request(port, "POST", "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "  hi \n"}], "max_tokens": 3})
check(status == 200 and json.loads(text)["usage"]["prompt_tokens"] == want_n,
      "llama3 chat prompt: %s, want %d tokens" % (text, want_n))
terminate(server, "llama3 server")

# BitNet 2B-4T's template (synth's default for that arch): "User: " + the content as it is, end of turn,
# then "Assistant: "
bitnet = tmp + "/bitnet.gguf"
subprocess.run([bnc, "synth", "-o", bitnet, "--shape", "tiny", "--arch", "bitnet-b1.58", "--type", "i2_s"], check=True,
               capture_output=True)
server, port, line = start(gguf=bitnet)
check("chat template bitnet: the model's chat template" in line, "bitnet template not chosen: %r" % line)
want_n = 1 + count("User:   hi \n") + 1 + count("Assistant: ")
status, text, _ = request(port, "POST", "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "  hi \n"}], "max_tokens": 3})
check(status == 200 and json.loads(text)["usage"]["prompt_tokens"] == want_n,
      "bitnet chat prompt: %s, want %d tokens" % (text, want_n))
terminate(server, "bitnet server")

# a ChatML template over a vocabulary without its tokens: the plain template, and the line says why
chatml = tmp + "/chatml.gguf"
subprocess.run([bnc, "synth", "-o", chatml, "--shape", "tiny", "--arch", "bitnet-b1.58", "--type", "i2_s",
                "--chat-template", "chatml"], check=True, capture_output=True)
server, port, line = start(gguf=chatml)
check("chat template plain: the model's chat template, but its vocabulary lacks" in line, "chatml fallback: %r" % line)
terminate(server, "chatml server")
shutil.rmtree(tmp)

# IPv6, where this machine has a loopback for it
try:
    socket.socket(socket.AF_INET6).bind(("::1", 0))
    has_v6 = True
except OSError:
    has_v6 = False
if has_v6:
    server, port, line = start("--host", "::1")
    check("http://[::1]:" in line, "IPv6 address: %r" % line)
    status, _, _ = request(port, "GET", "/health", host="::1")
    check(status == 200, "IPv6 health")
    terminate(server, "IPv6 server")

print("bnc serve: %s" % ("all checks passed" if not fails else "%d failed" % fails))
sys.exit(1 if fails else 0)
