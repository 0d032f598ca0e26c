#!/usr/bin/env python3
"""Reference data reading + RoBERTa slow-tokenizer ids, written from
docs/reference-semantics.md §1.5, §2.2, §2.4 and §3 (not copied from upstream code).

transformers >= 5 no longer ships the pure-Python (slow) RobertaTokenizer, so the byte-level
BPE of §2.2 step 4 is written here from the spec as well. As an independent check, every
non-special fragment is also encoded with the `tokenizers` package (the fast tokenizer, which
the spec says agrees with the slow one on fragments without special strings) and the script
aborts on any difference.

Produces the compact fixture crates/c2n-data/tests/data/ruby_tokenize_fixture.json.

Regenerate (from the workspace root, with ../shared present):
    python3 tools/reference/tokenize_reference.py \
        --shared ../shared \
        --out crates/c2n-data/tests/data/ruby_tokenize_fixture.json
"""
import argparse
import hashlib
import json
import os

import regex

GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
SPECIALS = ["<s>", "</s>", "<unk>", "<pad>", "<mask>"]


def bytes_to_unicode():
    """§2.2 step 4.2: printable bytes map to themselves, the 68 others to 256, 257, ..."""
    table = {}
    nxt = 256
    for b in range(256):
        if 33 <= b <= 126 or 161 <= b <= 172 or b >= 174:
            table[b] = chr(b)
        else:
            table[b] = chr(nxt)
            nxt += 1
    return table


class SlowRoberta:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.decoder = {v: k for k, v in self.encoder.items()}
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        # Header line "#version: 0.2", then one merge per line; rank = 0-based position.
        merges = [tuple(l.split()) for l in lines[1:] if l.strip()]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        symbols = list(word)
        while len(symbols) > 1:
            pairs = {(symbols[i], symbols[i + 1]) for i in range(len(symbols) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged = []
            i = 0
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == best[0] and symbols[i + 1] == best[1]:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        self.cache[word] = symbols
        return symbols

    def bpe_fragment(self, text):
        out = []
        for piece in GPT2_PATTERN.findall(text):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            out.extend(self.bpe(mapped))
        return out

    def split_special(self, text):
        """§2.2 step 3, one special string at a time."""
        pieces = [text]
        for tok in SPECIALS:
            new = []
            for piece in pieces:
                if piece in SPECIALS:
                    new.append(piece)
                    continue
                frags = [f.rstrip() for f in piece.split(tok)]
                for f in frags[:-1]:
                    if f:
                        new.append(f)
                    new.append(tok)
                if frags[-1]:
                    new.append(frags[-1])
            pieces = new
        return pieces

    def tokenize(self, text, fragments_out=None):
        if not text.strip():
            return []
        tokens = []
        for piece in self.split_special(text):
            if piece in SPECIALS:
                tokens.append(piece)
            else:
                if fragments_out is not None:
                    fragments_out.append(piece)
                tokens.extend(self.bpe_fragment(piece))
        return tokens

    def ids(self, text, fragments_out=None):
        unk = self.encoder["<unk>"]
        return [self.encoder.get(t, unk) for t in self.tokenize(text, fragments_out)]

    def decode(self, ids):
        text = "".join(self.decoder.get(i, "<unk>") for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")


def normalize(tokens, newline_repl):
    """§1.5 steps 2/3 with CPython's str.split (Python whitespace)."""
    return " ".join(" ".join(tokens).replace("\n", newline_repl).strip().split())


def sha16(data):
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def ids_sha(ids):
    return sha16(",".join(str(i) for i in ids))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", required=True)
    ap.add_argument("--full-examples", type=int, default=20)
    args = ap.parse_args()

    rb = os.path.join(args.shared, "data", "roberta-base")
    tok = SlowRoberta(os.path.join(rb, "vocab.json"), os.path.join(rb, "merges.txt"))
    from tokenizers import Tokenizer  # independent check of the BPE on fragments

    fast = Tokenizer.from_file(os.path.join(rb, "tokenizer.json"))

    def checked_ids(text):
        frags = []
        ids = tok.ids(text, frags)
        for frag in frags:
            mine = [tok.encoder[t] for t in tok.bpe_fragment(frag)]
            theirs = fast.encode(frag, add_special_tokens=False).ids
            assert mine == theirs, (frag, mine, theirs)
        return ids

    examples, full = [], []
    for split in ["test", "valid"]:
        path = os.path.join(args.shared, "data", "codesearchnet", "ruby", f"{split}.jsonl")
        with open(path, encoding="utf-8") as f:
            for idx, line in enumerate(f):
                js = json.loads(line.strip())
                source = normalize(js["code_tokens"], " ")
                target = normalize(js["docstring_tokens"], "")
                s_ids = checked_ids(source)
                t_ids = checked_ids(target)
                examples.append(
                    {
                        "split": split,
                        "idx": idx,
                        "source_sha": sha16(source),
                        "target_sha": sha16(target),
                        "source_len": len(s_ids),
                        "target_len": len(t_ids),
                        "source_ids_sha": ids_sha(s_ids),
                        "target_ids_sha": ids_sha(t_ids),
                    }
                )
                if split == "test" and idx < args.full_examples:
                    full.append(
                        {"split": split, "idx": idx, "source": source, "target": target,
                         "source_ids": s_ids, "target_ids": t_ids}
                    )

    texts = [
        "Returns the value .",
        "None",
        "",
        "   \t ",
        "a <s> b</s>c  <mask> d",
        "<s>starts with bos",
        "ends with eos </s>",
        "  lead <pad> x <unk>",
        "<pad><unk><mask>",
        "if ( a <s > b ) </ s> <mask",
        "trailing spaces   ",
        "x\u00a0\u2028 y  \n z",
        "caf\u00e9 \u4e2d\u6587 \U0001F600 it's we'll 123abc",
    ]
    token_cases = [{"text": t, "ids": tok.ids(t), "tokens": tok.tokenize(t)} for t in texts]

    enc = tok.encoder
    e_acute = [enc[tok.byte_encoder[b]] for b in "\u00e9".encode("utf-8")]
    euro = [enc[tok.byte_encoder[b]] for b in "\u20ac".encode("utf-8")]
    decode_ids = [
        [1, 3, 50264, 2],
        [29974, 5, 923, 479],
        [0, 48293, 29, 5, 16899, 4819, 335, 5305, 1241, 2],
        e_acute[:1],
        e_acute[:1] + [tok.encoder["a"]],
        euro[:2] + [tok.encoder["b"]] + euro[1:],
        euro[1:] + euro,
        [999999, 5],
    ]
    decode_cases = [{"ids": ids, "text": tok.decode(ids)} for ids in decode_ids]

    normalize_inputs = [
        (["def", "f\n(x)"], ["Does\nthings", " ."]),
        ([" \ta\x1cb\x1f ", "\u00a0", "c\u2028\r\n", ""], ["x\ny", "z\u3000\u2000w", "\x1d"]),
        (["\n", "  "], ["\n"]),
        (["a\u0085b\u202fc\u205fd\u1680e"], ["p\x0bq\x0cr\u2029s"]),
    ]
    normalize_cases = [
        {"code_tokens": c, "docstring_tokens": d, "source": normalize(c, " "),
         "target": normalize(d, "")}
        for c, d in normalize_inputs
    ]

    out = {
        "generated_by": "tools/reference/tokenize_reference.py --shared ../shared "
        "--out crates/c2n-data/tests/data/ruby_tokenize_fixture.json",
        "hash": "sha256 hex, first 16 chars; ids hashed as ','.join(map(str, ids)) in UTF-8",
        "token_cases": token_cases,
        "decode_cases": decode_cases,
        "normalize_cases": normalize_cases,
        "full": full,
        "examples": examples,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(examples)} examples, {len(full)} full")


if __name__ == "__main__":
    main()
