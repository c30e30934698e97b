#!/usr/bin/env python3
"""Writes the BLEU fixtures of crates/cht-data/tests/bleu/ with sacreBLEU's own numbers, which
crates/cht-data/tests/bleu.rs compares cht's BLEU against (to 0.01, and every tokenised line
exactly). Needs PyPI's sacrebleu (only here, never at run time):

    python3 -m venv /tmp/bleu-venv && /tmp/bleu-venv/bin/pip install sacrebleu==2.6.0
    /tmp/bleu-venv/bin/python scripts/bleu_fixtures.py

The hand-written German pairs (hyp-de.txt, ref-de.txt, ref2-de.txt) are kept in git; this script
adds a random punctuation-heavy pair (fixed seed) that exercises every rule of the 13a tokenizer,
then writes expected.json.
"""
import json
import os
import random

import sacrebleu
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "cht-data", "tests", "bleu")


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def write(name, lines):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def random_lines(rng, n):
    # Letters, digits, every ASCII symbol, umlauts, entities, and odd whitespace.
    pieces = list("abcxyzÄöüß0123456789") + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + [
        " ", " ", " ", "  ", "\t", "&quot;", "&amp;", "&lt;", "&gt;", "<skipped>", "1.5", "3,000",
        "7-", "-", "..", ",,", "\u00a0", "\u2009", "\u201e", "\u201c", "\u2013",
    ]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def main():
    rng = random.Random(20261201)
    write("hyp-random.txt", random_lines(rng, 120))
    write("ref-random.txt", random_lines(rng, 120))
    # A pair with words in common but no common 3- or 4-gram: the smoothing methods differ.
    write("ref-upper.txt", [line.upper() for line in read("ref-de.txt")])
    write("hyp-short.txt", ["a b c d", "e f", "a c b d"])
    write("ref-short.txt", ["a b x c d", "e x f", "a x c b"])

    cases = [
        ("de", "hyp-de.txt", ["ref-de.txt"], {}),
        ("random-lowercase", "hyp-random.txt", ["ref-random.txt"], {"lowercase": True}),
        ("de-upper", "hyp-de.txt", ["ref-upper.txt"], {}),
        ("de-upper-lowercase", "hyp-de.txt", ["ref-upper.txt"], {"lowercase": True}),
        ("de-two-refs", "hyp-de.txt", ["ref-de.txt", "ref2-de.txt"], {}),
        ("random", "hyp-random.txt", ["ref-random.txt"], {}),
        ("short-exp", "hyp-short.txt", ["ref-short.txt"], {}),
        ("short-none", "hyp-short.txt", ["ref-short.txt"], {"smooth_method": "none"}),
        ("short-floor", "hyp-short.txt", ["ref-short.txt"], {"smooth_method": "floor", "smooth_value": 0.1}),
        ("short-add-k", "hyp-short.txt", ["ref-short.txt"], {"smooth_method": "add-k", "smooth_value": 1}),
    ]
    out = {"sacrebleu": sacrebleu.__version__, "cases": []}
    for name, hyp, refs, kwargs in cases:
        hyps = read(hyp)
        ref_lists = [read(r) for r in refs]
        bleu = BLEU(**kwargs)
        s = bleu.corpus_score(hyps, ref_lists)
        out["cases"].append({
            "name": name, "hyp": hyp,
            "refs": refs, **kwargs, "score": s.score, "precisions": s.precisions, "bp": s.bp,
            "sys_len": s.sys_len, "ref_len": s.ref_len, "line": str(s),
        })
    tok = Tokenizer13a()
    out["tokenized"] = {f: [tok(line.rstrip()) for line in read(f)]
                        for f in ["hyp-de.txt", "hyp-random.txt", "ref-random.txt"]}
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
