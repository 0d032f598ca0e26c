#!/usr/bin/env python3
"""Write the c2n-eval test fixtures from the spec-written reference (reference_bleu.py),
CPython itself (lower(), repr(), round()) and the `sacrebleu` package.

Regenerate (from the workspace root; needs ../shared for the ruby fixtures):
    python3 tools/bleu/make_fixtures.py

Outputs, all under crates/c2n-eval/tests/data/:
  public_example.gold / public_example.output   §9.8 CodeXGLUE evaluator example (5 + 5 lines)
  public_example.json                           its score, total, sacreBLEU score
  ruby_test_transforms.json                     ruby test gold vs deterministic prediction transforms
  edge_cases.json                               hand-made gold/prediction sets (errors included)
  normalization_cases.json                      named texts and their tokens (NIST chain)
  random_strings.json                           random texts: Python lower(), NIST-chain tokens
  random_corpus.json                            random corpora: smoothed BLEU and sacreBLEU
  pyfloat.json                                  repr(x) and repr(round(x, 2)) for awkward doubles
"""
import json
import os
import random
import struct
import sys

import sacrebleu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_bleu as rb  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "crates", "c2n-eval", "tests", "data")
SHARED = os.environ.get("C2N_SHARED", os.path.join(ROOT, "..", "shared"))
RUBY_TEST = os.path.join(SHARED, "data", "codesearchnet", "ruby", "test.jsonl")


def dump(name, obj):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, indent=1)
        f.write("\n")


def gold_lines_from_text(text):
    """Lines as Python's universal-newline text mode yields them."""
    import io
    return list(io.StringIO(text, newline=None))


def sacre(gold_lines, pred_rows):
    """sacreBLEU (defaults: 13a, exp smoothing) over the pairs matched like computeMaps:
    hypothesis = field 1 of the stripped row, references = gold texts, gold order."""
    pred = {}
    for row in pred_rows:
        fields = row.strip().split("\t")
        pred[fields[0]] = fields[1] if len(fields) >= 2 else ""
    refs = {}
    for line in gold_lines:
        rid, text = line.split("\t")
        if rid in pred:
            refs.setdefault(rid, []).append(text)
    ids = list(refs)
    hyps = [pred[i] for i in ids]
    m = max(len(refs[i]) for i in ids)
    streams = [[refs[i][j] if j < len(refs[i]) else None for i in ids] for j in range(m)]
    # force=True only silences the "tokenized period" warning; it changes no number.
    return sacrebleu.BLEU(force=True).corpus_score(hyps, streams).score


def expected(gold_lines, pred_rows):
    try:
        bleu, total = rb.score(gold_lines, pred_rows)
    except ValueError as e:
        return {"error": "gold_line", "line": e.args[0]}
    except ZeroDivisionError:
        return {"error": "no_match"}
    simple, _ = rb.score(gold_lines, pred_rows, rb.simplified_normalize)
    assert repr(simple) == repr(bleu), (gold_lines, pred_rows)
    return {"bleu": repr(bleu), "total": total, "round2": repr(round(bleu, 2)),
            "sacrebleu": repr(sacre(gold_lines, pred_rows))}


# --- §9.8 public example ---------------------------------------------------------

def ruby_gold():
    gold = []
    with open(RUBY_TEST, encoding="utf-8") as f:
        for i, line in enumerate(f):
            record = json.loads(line.strip())
            target = " ".join(record["docstring_tokens"]).replace("\n", "")
            gold.append((str(i), " ".join(target.strip().split())))
    return gold


PUBLIC_PREDICTIONS = [
    "0\tPrints a summary message",
    "1\tFinds the output from the output file",
    "2\tVerify that the given JSON element is present .",
    "3\tDetermines the specified compression compression .",
    "4\tCreates a new project .",
]


def public_example(gold):
    lines = [f"{i}\t{t}\n" for i, t in gold[:5]]
    with open(os.path.join(OUT, "public_example.gold"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    with open(os.path.join(OUT, "public_example.output"), "w", encoding="utf-8") as f:
        f.writelines(p + "\n" for p in PUBLIC_PREDICTIONS)
    exp = expected(lines, PUBLIC_PREDICTIONS)
    assert exp["bleu"] == "9.554726113590661", exp
    dump("public_example.json", exp)


# --- ruby test transforms (mirrored in tests/ruby_parity.rs) ---------------------------

def transforms():
    def rows(fn):
        return lambda gold: [f"{i}\t{fn(t.split(' '))}" for i, t in gold]

    return {
        "identity": rows(lambda w: " ".join(w)),
        "first_half": rows(lambda w: " ".join(w[: (len(w) + 1) // 2])),
        "reversed": rows(lambda w: " ".join(reversed(w))),
        "drop_every_third": rows(lambda w: " ".join(x for k, x in enumerate(w) if k % 3 != 2)),
        "swap_pairs": rows(lambda w: " ".join(
            w[k + 1] if k % 2 == 0 and k + 1 < len(w) else (w[k - 1] if k % 2 == 1 else w[k])
            for k in range(len(w)))),
        "first_word": rows(lambda w: w[0]),
        "constant": rows(lambda w: "Returns the value ."),
        "empty": rows(lambda w: ""),
        "upper_underscored": rows(lambda w: "_".join(w).upper()),
        "odd_ids_tail": lambda gold: [f"{i}\t{' '.join(t.split(' ')[1:])}" for i, t in gold if int(i) % 2 == 1],
        "overwritten": lambda gold: [f"{i}\tgarbage" for i, _ in gold] + [f"{i}\t{t}" for i, t in gold],
        "extra_tab_field": rows(lambda w: " ".join(w[:3]) + "\t" + " ".join(w)),
    }


def ruby_transforms(gold):
    lines = [f"{i}\t{t}\n" for i, t in gold]
    dump("ruby_test_transforms.json",
         {name: expected(lines, fn(gold)) for name, fn in transforms().items()})


# --- edge cases ------------------------------------------------------------------

EDGE_CASES = {
    "empty_prediction_tab": ("0\tReturns the value of x\n", ["0\t"]),
    "empty_prediction_no_tab": ("0\tReturns the value of x\n", ["0"]),
    "exact_match_case": ("0\tReturns The Value\n", ["0\treturns the value"]),
    "one_token": ("0\tReturns the value of x\n", ["0\tReturns"]),
    "two_tokens": ("0\tReturns the value of x\n", ["0\tthe value"]),
    "three_tokens": ("0\tReturns the value of x\n", ["0\tthe value of"]),
    "zero_unigram_match": ("0\tReturns the value of x\n", ["0\tfoo bar baz"]),
    "brevity_short": ("0\ta b c d e f g h i j\n", ["0\ta b c"]),
    "longer_than_ref": ("0\ta b c\n", ["0\ta b c d e f g h"]),
    "multi_reference": ("0\ta b c d\n0\ta a b\n1\tx y\n",
                        ["0\ta a a b c", "1\ty x"]),
    "underscores": ("0\tcall foo_bar_baz now\n", ["0\tcall foo bar baz now"]),
    "double_underscore": ("0\t__init__ method\n", ["0\t_ _ init _ _ method"]),
    "apostrophes": ("0\tdon't stop the user's job\n", ["0\tdon ' t stop the user s job"]),
    "digits_dot_comma": ("0\tversion 3.14 has 1,000 items.\n", ["0\tversion 3 . 14 has 1 , 000 items ."]),
    "dash_digits": ("0\tfrom 1-2 to a-b\n", ["0\tfrom 1 - 2 to a - b"]),
    "xml_entity": ("0\tx &amp; y &lt;z&gt; &quot;\n", ["0\tx & amp ; y < z > \""]),
    "superscript_fraction_circled": ("0\tx² costs ½ of Ⓐ\n", ["0\tx² costs ½ of ⓐ"]),
    "combining_marks": ("0\tcafe\u0301 re\u0301sume\u0301\n", ["0\tcafe re sume"]),
    "dotted_capital_i": ("0\tİstanbul is big\n", ["0\ti stanbul is big"]),
    "dotted_capital_i_match": ("0\tİstanbul is big\n", ["0\ti\u0307stanbul is big"]),
    "final_sigma": ("0\tΟΔΟΣ ΣΑΣ Σ\n", ["0\tοδος σας σ"]),
    "final_sigma_other": ("0\tΟΔΟΣ ΣΑΣ Σ\n", ["0\tοδοσ ςας ς"]),
    "info_separators": ("0\ta\x1cb\x1dc\x1ed\x1fe\n", ["0\ta b c d e"]),
    "info_separator_strip": ("0\t\x1creturns x\x1f\n", ["\x1c0\treturns x\x1f"]),
    "nbsp_and_ideographic_space": ("0\ta\u00a0b\u3000c\n", ["0\ta b c"]),
    "connector_zwj": ("0\ta\u203fb c\u200dd\n", ["0\ta \u203f b c \u200d d"]),
    "special_tokens_text": ("0\tReturns <pad> value\n", ["0\tReturns < pad > value <unk>"]),
    "replacement_char": ("0\tbad \ufffd byte\n", ["0\tbad\ufffdbyte"]),
    "cjk_and_arabic_digits": ("0\t中文 \u0661\u0662\u0663 text\n", ["0\t中文 \u0661\u0662\u0663 text"]),
    "tab_inside_prediction": ("0\tReturns the value\n", ["0\tReturns\tthe value"]),
    "duplicate_prediction_ids": ("0\tReturns the value\n", ["0\tReturns the value", "0\tsomething else"]),
    "duplicate_prediction_ids_last_good": ("0\tReturns the value\n", ["0\tsomething else", "0\tReturns the value"]),
    "gold_without_prediction": ("0\ta b c\n1\td e f\n2\tg h i\n", ["1\td e"]),
    "gold_id_not_stripped": ("0 \ta b c\n1\td e f\n", ["0\ta b c", "1\td e f"]),
    "prediction_row_stripped": ("0\ta b c\n", ["  0\ta b c  \n"]),
    "crlf_and_cr_lines": ("0\ta b c\r\n1\td e f\r2\tg h\n", ["0\ta b c", "1\td e f", "2\tg h"]),
    "no_trailing_newline": ("0\ta b c\n1\td e f", ["0\ta b", "1\td e f"]),
    "newline_in_gold_text": ("0\tnon-\nblocking io\n", ["0\tnon-blocking io"]),
    "hyphen_newline_in_prediction": ("0\tnonblocking io\n", ["0\tnon-\nblocking io"]),
    "skipped_tag_in_prediction": ("0\tfoo bar baz qux\n", ["0\tfoo <skipped>bar baz qux"]),
    "no_match": ("0\ta b c\n", ["7\ta b c"]),
    "gold_two_tabs": ("0\ta b c\n1\td\te\n", ["0\ta b c"]),
    "gold_no_tab": ("0\ta b c\n\n", ["0\ta b c"]),
}


def edge_cases():
    out = {}
    for name, (gold_text, rows) in EDGE_CASES.items():
        case = {"gold": gold_text, "predictions": rows}
        case.update(expected(gold_lines_from_text(gold_text), rows))
        out[name] = case
    dump("edge_cases.json", out)


# --- random strings and corpora ---------------------------------------------------------

ALPHABET = (list("abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789") + list(" .,-_'&;<>\"!?()[]{}:/@#$%*+=|\\^`~")
            + ["\t", "\n", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\u00a0", "\u2028", "\u3000", "\u0085"]
            + ["é", "É", "İ", "Σ", "σ", "ς", "Ω", "ß", "ẞ", "²", "½", "①", "Ⓐ", "ⓐ", "\u0301", "\u0307", "\u0345",
               "\u05b0", "\u0610", "\u093f", "‿", "\u200d", "\u200c", "中", "\u0661", "\ufffd", "😀", "\u00ad",
               "ǅ", "ᾈ", "Ⅻ", "\U0001F130", "ﬁ", "\u0130", "K", "Å"]
            + ["<skipped>", "&amp;", "&lt;", "&gt;", "&quot;", "-\n", "foo_bar", "3.14", "1,0", "7-"])


NORMALIZATION_CASES = {
    "underscores": "foo_bar __init__ _x_",
    "apostrophes": "don't stop the user's 'job'",
    "digits_dot_comma": "3.14 1,000 v1.2.3 a.b, c.",
    "dash": "1-2 a-b -3 x--y",
    "xml_entities": "x &amp; y &lt;z&gt; &quot;q&quot; &#39;",
    "skipped_tag": "a <skipped> b",
    "superscript_fraction_circled": "x² ½ ① Ⓐ ⓐ \U0001F130",
    "combining_marks": "cafe\u0301 \u0345x \u05b0\u05b1 \u093f\u0915",
    "dotted_capital_i": "İstanbul İ",
    "final_sigma": "ΟΔΟΣ ΣΑΣ Σ ΑΣ\u0301 Σ. ΑΣΑ",
    "info_separators": "\x1ca\x1db\x1ec\x1f",
    "other_spaces": "a\u00a0b\u2028c\u3000d\u0085e\u200bf",
    "connector_and_joiners": "a\u203fb c\u200dd e\u200cf",
    "special_tokens": "<pad> <unk> <mask> <s></s>",
    "replacement_char": "bad\ufffdbyte",
    "non_ascii_digits": "\u0661\u0662 \uff11\uff12 Ⅻ",
    "cjk_emoji": "中文字 😀x",
    "empty": "",
    "only_space": " \t\x1c ",
    "single_token": "Returns",
    "uppercase_sharp_s": "STRASSE ẞ ß ǅ",
}


def normalization_cases():
    out = {}
    for name, text in NORMALIZATION_CASES.items():
        nist = rb.nist_normalize(rb.split_puncts(text.strip().lower()))
        assert nist == rb.simplified_normalize(text), name
        out[name] = {"text": text, "tokens": nist}
    dump("normalization_cases.json", out)


def random_text(rng, n):
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def random_strings():
    rng = random.Random(20240601)
    out = []
    for _ in range(400):
        text = random_text(rng, rng.randint(0, 30))
        split = rb.split_puncts(text.strip().lower())
        nist = rb.nist_normalize(split)
        assert nist == rb.simplified_normalize(text), text
        out.append({"text": text, "lower": text.lower(), "tokens": nist})
    dump("random_strings.json", out)


WORDS = ["returns", "the", "value", "of", "a", "an", "x", "list", "for", "_", "get", "set", "user", "id", ".",
         ",", "(", ")", "Σ", "İd", "file", "path", "name", "new", "is", "to", "in", "2", "3.5"]


def random_corpus(rng, n_ids):
    gold, rows = [], []
    for i in range(n_ids):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(1, 14))]
        gold.append(f"{i}\t{' '.join(ref)}\n")
        if rng.random() < 0.15:
            extra = [rng.choice(WORDS) for _ in range(rng.randint(1, 10))]
            gold.append(f"{i}\t{' '.join(extra)}\n")
        if rng.random() < 0.9:
            hyp = [w for w in ref if rng.random() < 0.7] + [rng.choice(WORDS) for _ in range(rng.randint(0, 4))]
            if rng.random() < 0.3:
                rng.shuffle(hyp)
            rows.append(f"{i}\t{' '.join(hyp)}")
    rng.shuffle(rows)
    return "".join(gold), rows


def random_corpora():
    rng = random.Random(7)
    out = []
    for n_ids in [1, 2, 3, 5, 10, 50, 200, 1000]:
        gold, rows = random_corpus(rng, n_ids)
        case = {"gold": gold, "predictions": rows}
        case.update(expected(gold_lines_from_text(gold), rows))
        out.append(case)
    dump("random_corpus.json", out)


# --- Python float formatting --------------------------------------------------------------

def pyfloat():
    values = [0.0, -0.0, 100.0, 1.0, 17.8, 9.554726113590661, 1e16, 9999999999999998.0, 1e15, 123456789012345678.0,
              1e-4, 0.00011, 9.99e-5, 1e-5, 1.2213386697554703e-75, 5e-324, 2.2250738585072014e-308,
              1.7976931348623157e308, 2.675, 0.125, 0.375, 1.005, 0.005, 0.015, 0.025, 99.995, 99.99499999999999,
              123.456, 1.5e300, -3.25, 0.1, 0.2 + 0.1, 1e22, 1e21, 12345678.9, float("inf"), float("-inf")]
    rng = random.Random(11)
    for _ in range(300):
        values.append(rng.uniform(0, 100))
    for _ in range(200):
        values.append(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0])
    for _ in range(100):
        values.append(round(rng.uniform(0, 100), 3) + 0.0005 * rng.choice([-1, 0, 1]))
    out = []
    for v in values:
        if v != v:
            continue
        bits = struct.unpack("<Q", struct.pack("<d", v))[0]
        rounded = round(v, 2)
        out.append({"bits": f"{bits:016x}", "repr": repr(v), "round2": repr(rounded)})
    dump("pyfloat.json", out)


def main():
    os.makedirs(OUT, exist_ok=True)
    edge_cases()
    normalization_cases()
    random_strings()
    random_corpora()
    pyfloat()
    if os.path.exists(RUBY_TEST):
        gold = ruby_gold()
        public_example(gold)
        ruby_transforms(gold)
    else:
        print(f"skipping ruby fixtures: {RUBY_TEST} not found", file=sys.stderr)


if __name__ == "__main__":
    main()
