#!/usr/bin/env python3
"""Reference smoothed sentence BLEU-4 of code2nl / CodeXGLUE, written from
/work/shared/docs/reference-semantics.md §9.2-9.6 (not copied from upstream).

It holds both normalizations of §9.3:
  * `nist_normalize`: the original mteval-style chain (skipped tags, hyphenation,
    XML unescape, padding + lower, the four substitutions, whitespace split);
  * `simplified_normalize`: the equivalent token rule used by the Rust crate.
`sentence_bleu` uses the NIST chain by default, so fixtures produced with it are
independent of the Rust simplification.

Stand-alone use, like the CodeXGLUE evaluator:
    python3 tools/bleu/reference_bleu.py GOLD < PRED     # "Total: N" on stderr, BLEU on stdout
"""
import math
import re
import sys

EPS = sys.float_info.min  # smallest normal double, 2.2250738585072014e-308

# --- §9.2 reading ---------------------------------------------------------------

_SPLIT_PUNCTS = re.compile(r"\w+|[^\s\w]")  # Python 3 str semantics


def split_puncts(text):
    """`tokenize_bleu`: word runs or single non-word non-space characters, space-joined."""
    return " ".join(_SPLIT_PUNCTS.findall(text))


def prediction_map(rows):
    """id -> [tokenized text]; later rows overwrite earlier ones; extra tab fields dropped."""
    pred = {}
    for row in rows:
        fields = row.strip().split("\t")
        rid = fields[0]
        text = fields[1] if len(fields) >= 2 else ""
        pred[rid] = [split_puncts(text.strip().lower())]
    return pred


def gold_map(gold_lines, pred):
    """id -> [tokenized refs] in gold order, only ids with a prediction.

    Raises ValueError(line_number) when a line does not have exactly one tab."""
    gold = {}
    for number, line in enumerate(gold_lines, start=1):
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(number)
        rid, text = parts
        if rid in pred:
            gold.setdefault(rid, []).append(split_puncts(text.strip().lower()))
    return gold


# --- §9.3 normalization -----------------------------------------------------------

_PUNCT = re.compile(r"([{|}~\[\\\]^_`" r" !\"#$%&()*+:;<=>?@/])")
_BEFORE_NONDIGIT = re.compile(r"([^0-9])([.,])")
_AFTER_NONDIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def nist_normalize(s):
    s = s.replace("<skipped>", "")
    s = s.replace("-\n", "")
    s = s.replace("\n", " ")
    # XML unescape; `&amp;` last so that `&amp;lt;` gives `&lt;`.
    s = s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    s = (" " + s + " ").lower()
    s = _PUNCT.sub(r" \1 ", s)
    s = _BEFORE_NONDIGIT.sub(r"\1 \2 ", s)
    s = _AFTER_NONDIGIT.sub(r" \1 \2", s)
    s = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", s)
    return s.split()


def simplified_normalize(s):
    tokens = []
    for piece in _SPLIT_PUNCTS.findall(s.strip().lower()):
        if re.fullmatch(r"\w+", piece):
            for i, part in enumerate(piece.split("_")):
                if i:
                    tokens.append("_")
                if part:
                    tokens.append(part)
        else:
            tokens.append(piece)
    return tokens


# --- §9.5 sentence BLEU -----------------------------------------------------------

def _ngrams(tokens, k):
    counts = {}
    for i in range(len(tokens) - k + 1):
        g = tuple(tokens[i:i + k])
        counts[g] = counts.get(g, 0) + 1
    return counts


def sentence_bleu(refs, hyp, normalize=nist_normalize):
    """refs: list of tokenized reference strings; hyp: tokenized hypothesis string."""
    hy = normalize(hyp)
    rs = [normalize(r) for r in refs]
    reflen = min(len(r) for r in rs)
    testlen = len(hy)
    logbleu = 0.0
    for k in range(1, 5):
        hyp_counts = _ngrams(hy, k)
        ref_max = {}
        for r in rs:
            for g, c in _ngrams(r, k).items():
                ref_max[g] = max(ref_max.get(g, 0), c)
        correct = sum(min(c, ref_max.get(g, 0)) for g, c in hyp_counts.items())
        guess = max(testlen - k + 1, 0)
        s = 0 if k == 1 else 1
        logbleu += math.log(correct + s + EPS) - math.log(guess + s + EPS)
    logbleu /= 4.0
    bp = min(0, 1 - float(reflen + 1) / (testlen + 1))
    return math.exp(logbleu + bp)


# --- §9.6 aggregation ---------------------------------------------------------------

def bleu_from_maps(gold, pred, normalize=nist_normalize):
    total = 0.0
    count = 0
    for rid in gold:
        total += sentence_bleu(gold[rid], pred[rid][0], normalize)
        count += 1
    if count == 0:
        raise ZeroDivisionError("no gold id has a prediction")
    return total * 100.0 / count


def score(gold_lines, pred_rows, normalize=nist_normalize):
    """Returns (bleu, matched_count)."""
    pred = prediction_map(pred_rows)
    gold = gold_map(gold_lines, pred)
    return bleu_from_maps(gold, pred, normalize), len(gold)


def read_lines(path):
    with open(path, encoding="utf-8") as f:  # universal newlines, as the reference
        return list(f)


def main():
    gold_lines = read_lines(sys.argv[1])
    rows = list(sys.stdin)
    bleu, total = score(gold_lines, rows)
    sys.stderr.write(f"Total: {total}\n")
    print(bleu)


if __name__ == "__main__":
    main()
