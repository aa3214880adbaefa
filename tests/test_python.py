"""bindings/python/bnc.py against the C example: the same greedy tokens, the same next token
evaluated one by one, timings, and errors raised with the library's message.
usage: BNC_LIBRARY=libbnc.so python3 test_python.py PLAN C_EXAMPLE"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import bnc  # noqa: E402

plan_path, example = sys.argv[1], sys.argv[2]
prompt = "Once upon a time"
fails = 0


def check(ok, what):
    global fails
    if not ok:
        print("FAIL:", what)
        fails += 1


check(re.match(r"^\d+\.\d+\.\d+ \(([0-9a-f]+(\+changes)?|unknown)\)$", bnc.version()) is not None, "version " + bnc.version())

# the C example's greedy continuation (16 tokens), as it prints it between the prompt and its timings line
out = subprocess.run([example, plan_path, prompt], capture_output=True, check=True).stdout
m = re.search(rb"\n" + re.escape(prompt.encode()) + rb"(.*)\n\d+ prompt tokens in", out, re.S)
check(m is not None, "C example output: %r" % out[:200])
c_text = m.group(1) if m else b""

with bnc.Plan(plan_path) as plan:
    check(plan.vocab_size > 0 and plan.context_length > 0 and plan.arch.startswith("bitnet"), "plan properties")
    with bnc.Session(plan, temperature=0, repeat_penalty=1) as s:
        texts = []
        ids = s.generate(prompt, 16, lambda tok, text: texts.append(text))
        check(b"".join(texts) == c_text, "greedy text %r, the C example's %r" % (b"".join(texts), c_text))
        check(len(ids) == len(texts) and [s.token_text(t) for t in ids] == texts, "callback tokens")
        t = s.timings()
        check(t["generated_tokens"] == len(ids) and t["prompt_tokens"] > 0 and t["prompt_s"] > 0, "timings %r" % t)
        # the same prompt one token at a time: the greedy next token is the first generated
        toks = s.tokenize(prompt)
        s.reset()
        for tok in toks:
            logits = s.eval([tok])
        check(len(logits) == plan.vocab_size, "logits length")
        best = max(range(len(logits)), key=logits.__getitem__)
        check(best == ids[0], "eval one by one predicts %d, generate began with %d" % (best, ids[0]))
        # a callback that stops: one token
        check(len(s.generate(prompt, 16, lambda tok, text: True)) == 1, "stopping callback")
        # errors come back as bnc.Error with the library's message
        try:
            s.eval([plan.vocab_size + 5])
            check(False, "a token outside the vocabulary was accepted")
        except bnc.Error as e:
            check("vocabulary" in str(e) and e.status != 0, "error message: %s" % e)
    # an F16 K/V cache: the same vocabulary of logits, a little different (docs/kv-cache.md)
    with bnc.Session(plan, kv="f16") as s16, bnc.Session(plan) as s32:
        toks = s32.tokenize(prompt)
        a, b = s32.eval(toks), s16.eval(toks)
        check(len(a) == len(b) and a != b, "kv='f16' left the logits unchanged")
    try:
        bnc.Session(plan, kv="q8")
        check(False, "kv = 'q8' accepted")
    except ValueError as e:
        check("kv must be" in str(e), "error message: %s" % e)
    try:
        bnc.Session(plan, threads=-1)
        check(False, "threads = -1 accepted")
    except bnc.Error as e:
        check("threads = -1" in str(e), "error message: %s" % e)
try:
    bnc.Plan("/nonexistent/model.bnplan")
    check(False, "a missing plan opened")
except bnc.Error as e:
    check("/nonexistent/model.bnplan" in str(e), "error message: %s" % e)

print("python bindings: %s" % ("all checks passed" if not fails else "%d failed" % fails))
sys.exit(1 if fails else 0)
