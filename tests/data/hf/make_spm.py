#!/usr/bin/env python3
"""Makes the SentencePiece-style tokenizer.json cases under tests/data/hf/ with Hugging Face tokenizers
(never with bnc): a BPE with byte_fallback over U+2581-marked words, as Llama 2's and Mistral's are,
learned from the example model's held-out text, its 256 <0xXX> byte tokens at ids 3..258 as Llama 2 has
them, in the two forms transformers writes:

  spm-legacy/     normalizer Prepend("\u2581") + Replace(" ", "\u2581"), no pre-tokenizer (Llama 2's file)
  spm-metaspace/  no normalizer, pre-tokenizer Metaspace(prepend_scheme "first", split false)
  spm-tokens.json ids the tokenizers library gives make.py's TEXT and a few more, per case

Run: python3 make_spm.py OUTDIR   (where tokenizers is installed)."""
import json, os, sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
TEXTS = ["<|begin_of_text|>In the beginning God created 12345 heavens; it's   the EARTH!\n\n"
         "  \u00dcber caf\u00e9 \u65e5\u672c\u8a9e \U0001F642 <|im_start|>user\nhi<|im_end|> 7 77 777 7777\ttab \r\n end",
         "And God said, Let there be light: and there was light.", " leading and trailing  ", "x", "<s>in</s> the",
         "\u0416\u0416 \u00e9\u00e9\u00e9 qqqq zzz"]
lines = open(os.path.join(HERE, "../../../examples/tiny-model/heldout.txt"), encoding="utf-8").read().splitlines()
norm = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])

learner = Tokenizer(models.BPE())
learner.normalizer = norm
learner.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=700, show_progress=False))
learned = json.loads(learner.to_str())["model"]
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for i in range(256):
    vocab["<0x%02X>" % i] = 3 + i
for t, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
    vocab.setdefault(t, len(vocab))
merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned["merges"]]


def make(form):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    if form == "legacy":
        tok.normalizer = norm
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


ids = {}
for form in ("legacy", "metaspace"):
    tok, d = make(form), os.path.join(OUT, "spm-" + form)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
               "tokenizer_class": "LlamaTokenizerFast"}, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    ids[form] = [tok.encode(t, add_special_tokens=False).ids for t in TEXTS]
    ids[form + "_decoded"] = [tok.decode(i) for i in ids[form]]
json.dump(ids | {"texts": TEXTS, "n_vocab": len(vocab)}, open(os.path.join(OUT, "spm-tokens.json"), "w"), indent=0,
          ensure_ascii=False)
print(len(vocab), [len(i) for i in ids["legacy"]], ids["legacy"] == ids["metaspace"])
