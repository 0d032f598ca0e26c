#!/usr/bin/env python3
"""Reference beam search for code2nl, written from docs/reference-semantics.md section 6.

This is our own implementation of the specification (not upstream code). It decodes ONE
example at a time, exactly as the reference pipeline does:

* ``Beam`` is the per-example state machine (section 6.2-6.6): float32 scores, first-step
  candidates from row 0 only, -1e20 row ASSIGNMENT for rows whose last token is EOS, top-K
  over the flattened K x V candidates, finished ``(score, t, k)`` triples appended in k
  order, sticky ``eos_top``, ``done()``, ``get_final``, ``get_hyp``, ``build_target_tokens``.
* ``beam_search(next_logprobs, beam_size, max_length)`` is the per-example driver of
  section 6.1: ``next_logprobs(ids)`` receives the full ``[K, L]`` int64 prefix (column 0
  is ``<s>`` = 0) and returns float32 log-probabilities ``[K, V]`` for the next token.

Tie rule (section 11 item 17 leaves it open): candidates are ranked by value, higher first,
and equal values by LOWER flat index ``k * V + w`` first. ``torch.topk`` does not promise
any tie order, so ``top_k`` below uses a stable descending sort, which gives the same
values as ``torch.topk(sorted=True)`` and this exact tie order. The Rust crate uses the
same rule (crates/c2n-model/src/beam/select.rs).

Usage as a library (e.g. from make_model_fixtures.py)::

    sys.path.insert(0, "tools/reference")
    from beam import beam_search
    out = beam_search(lambda ids: model_logprobs(ids), beam_size=10, max_length=128)
    out["rows"]        # K lists of max_length ids, right-padded with 0 (section 6.1 step 5)
    out["final"]       # K (score, t, k) triples of get_final, rank order
    out["hypotheses"]  # K dicts {"ids", "score"}: ids without <s> and EOS, rank order

Run as a script to (re)generate the toy-table fixtures of the Rust tests::

    python3 tools/reference/beam.py --write-fixtures crates/c2n-model/tests/data
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Callable, Dict, List, Tuple

import torch

SOS = 0
EOS = 2
DEAD_ROW = -1e20  # assigned (not added) to every candidate of a row that already ended in EOS


def top_k(flat: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-k of a 1-D float32 tensor: values descending, ties by lower index first."""
    values, indices = torch.sort(flat, descending=True, stable=True)
    return values[:k], indices[:k]


def torch_topk(flat: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(sorted=True)`` as the original code calls it; tie order unspecified.

    Faster than ``top_k``; equal to it whenever the K best values have no exact ties.
    """
    values, indices = torch.topk(flat, k, sorted=True)
    return values, indices


class Beam:
    """The per-example beam state machine of reference-semantics.md section 6.2-6.6."""

    def __init__(self, size: int, sos: int = SOS, eos: int = EOS, select=top_k):
        self.size = size
        self.select = select
        self.sos = sos
        self.eos = eos
        self.scores = torch.zeros(size, dtype=torch.float32)
        self.back: List[torch.Tensor] = []  # prevKs: origin row of every entry, per step
        first = torch.zeros(size, dtype=torch.long)
        first[0] = sos
        self.toks: List[torch.Tensor] = [first]  # nextYs: token of every entry, per step
        self.eos_top = False
        self.finished: List[Tuple[float, int, int]] = []

    def current_state(self) -> torch.Tensor:
        """Last tokens as a [K, 1] column."""
        return self.toks[-1].view(-1, 1)

    def current_origin(self) -> torch.Tensor:
        return self.back[-1]

    def advance(self, logp: torch.Tensor) -> None:
        """One step with float32 log-probabilities [K, V] (section 6.3)."""
        assert logp.dtype == torch.float32 and logp.dim() == 2 and logp.size(0) == self.size
        vocab = logp.size(1)
        if self.back:
            cand = logp + self.scores.unsqueeze(1)  # float32 addition
            for k in range(self.size):
                if int(self.toks[-1][k]) == self.eos:
                    cand[k, :] = DEAD_ROW  # assignment: a finished hypothesis cannot grow
        else:
            cand = logp[0, :].clone()  # first step: all rows are the same empty prefix
        best, flat = self.select(cand.reshape(-1), self.size)
        self.scores = best.clone()
        origin = torch.div(flat, vocab, rounding_mode="floor")
        word = flat - origin * vocab
        self.back.append(origin)
        self.toks.append(word)
        t = len(self.toks) - 1
        for k in range(self.size):
            if int(word[k]) == self.eos:
                self.finished.append((float(self.scores[k]), t, k))
        if int(word[0]) == self.eos:
            self.eos_top = True  # sticky

    def done(self) -> bool:
        return self.eos_top and len(self.finished) >= self.size

    def get_final(self) -> List[Tuple[float, int, int]]:
        """The K ranked (score, t, k) triples (section 6.5)."""
        last = len(self.toks) - 1
        if len(self.finished) == 0:
            self.finished.append((float(self.scores[0]), last, 0))
        # Python's sort is stable: ties keep insertion order (earlier step, then lower row).
        self.finished.sort(key=lambda entry: -entry[0])
        if len(self.finished) != self.size:
            unfinished = [
                (float(self.scores[k]), last, k)
                for k in range(self.size)
                if int(self.toks[-1][k]) != self.eos
            ]
            unfinished.sort(key=lambda entry: -entry[0])
            missing = self.size - len(self.finished)
            # missing < 0 reproduces the reference's negative slice; it cannot reach the first K.
            self.finished += unfinished[:missing]
        return self.finished[: self.size]

    def get_hyp(self, entry: Tuple[float, int, int]) -> List[int]:
        """Tokens chosen at steps 1..t for the entry, by walking the back-pointers (section 6.6)."""
        _, t, k = entry
        hyp = []
        for j in range(t - 1, -1, -1):
            hyp.append(int(self.toks[j + 1][k]))
            k = int(self.back[j][k])
        return hyp[::-1]

    def build_target_tokens(self, hyps: List[List[int]]) -> List[List[int]]:
        """Cut every hypothesis at its first EOS, exclusive."""
        out = []
        for hyp in hyps:
            cut = []
            for tok in hyp:
                if tok == self.eos:
                    break
                cut.append(tok)
            out.append(cut)
        return out


def beam_search(
    next_logprobs: Callable[[torch.Tensor], torch.Tensor],
    beam_size: int,
    max_length: int,
    sos: int = SOS,
    eos: int = EOS,
    select=top_k,
) -> Dict:
    """Decode one example (section 6.1). ``next_logprobs(ids [K, L] int64) -> [K, V] float32``.

    ``select`` is the top-K function (``top_k``: documented tie rule; ``torch_topk``: as the
    original code, for timing).
    """
    beam = Beam(beam_size, sos, eos, select)
    ids = beam.current_state().clone()
    steps = 0
    stopped_by_done = False
    for _ in range(max_length):
        if beam.done():
            stopped_by_done = True
            break
        logp = next_logprobs(ids)
        beam.advance(logp.to(torch.float32))
        steps += 1
        ids = torch.cat((ids.index_select(0, beam.current_origin()), beam.current_state()), -1)
    finished_by_advance = [[score, t, k] for score, t, k in beam.finished]
    final = beam.get_final()
    hyps = beam.build_target_tokens([beam.get_hyp(entry) for entry in final])
    rows = [h[:max_length] + [0] * (max_length - len(h)) for h in hyps[:beam_size]]
    return {
        "rows": rows,
        "final": [[score, t, k] for score, t, k in final],
        "hypotheses": [{"ids": h, "score": s} for h, (s, _, _) in zip(hyps, final)],
        "steps": steps,
        "stopped_by_done": stopped_by_done,
        "eos_top": beam.eos_top,
        # entries appended by advance(); get_final may add a row-0 substitute after these
        "finished": finished_by_advance,
    }


def cut_at_first_zero(row: List[int]) -> List[int]:
    """Section 6.7: a prediction ends at its first id 0 (padding, or a generated <s>)."""
    return row[: row.index(0)] if 0 in row else list(row)


# ----------------------------------------------------------------------------------------
# Toy table model used by the Rust tests (crates/c2n-model/tests/beam_fixtures.rs).
#
# The next-token log-probabilities of a row are ``table[h]`` where h is a hash of the row's
# generated tokens (column 0, the <s>, is skipped):  h = 0;  h = (h * 31 + tok + 7) mod H.
# Table values are float32 numbers stored as exact decimals, so both sides look up the very
# same numbers and only the beam bookkeeping is compared.
# ----------------------------------------------------------------------------------------


def prefix_hash(tokens: List[int], buckets: int) -> int:
    h = 0
    for tok in tokens:
        h = (h * 31 + tok + 7) % buckets
    return h


def table_model(table: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    buckets = table.size(0)

    def next_logprobs(ids: torch.Tensor) -> torch.Tensor:
        rows = [prefix_hash([int(x) for x in row[1:]], buckets) for row in ids]
        return table[torch.tensor(rows, dtype=torch.long)].clone()

    return next_logprobs


def make_table(seed: int, buckets: int, vocab: int, eos_bias: float, quantum: float) -> torch.Tensor:
    """Random log-softmax rows, EOS shifted by eos_bias; quantum > 0 rounds values (forces ties)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(buckets, vocab, generator=gen) * 2.0
    logits[:, EOS] += eos_bias
    logp = torch.log_softmax(logits, dim=-1)
    if quantum > 0:
        logp = torch.round(logp / quantum) * quantum
    return logp.to(torch.float32)


def coverage(out: Dict, beam_size: int, max_length: int) -> Dict[str, bool]:
    """Which beam paths of reference-semantics.md section 12 item 11 a run exercised."""
    finished = out["finished"]
    per_step: Dict[int, int] = {}
    for _, t, _ in finished:
        per_step[t] = per_step.get(t, 0) + 1
    return {
        "eos_at_step1_top": any(t == 1 and k == 0 for _, t, k in finished),
        "finished_over_several_steps": len(per_step) >= 2,
        "several_finished_in_one_step": max(per_step.values(), default=0) >= 2,
        "more_than_k_finished": len(finished) > beam_size,
        "fewer_than_k_finished": 0 < len(finished) < beam_size,
        "none_finished": len(finished) == 0,
        "stopped_by_done": out["stopped_by_done"],
        "reached_max_length": not out["stopped_by_done"] and out["steps"] == max_length,
    }


SCENARIOS = [
    # name, beam, vocab, buckets, max_length, eos_bias, quantum, predicate over (run, coverage)
    ("done_after_eos_top_at_step1", 3, 7, 97, 8, 3.0, 0.0,
     lambda r, c, t: c["eos_at_step1_top"] and c["stopped_by_done"] and c["finished_over_several_steps"]),
    ("more_than_k_finished", 4, 9, 97, 10, 1.5, 0.0,
     lambda r, c, t: c["more_than_k_finished"] and c["several_finished_in_one_step"]),
    ("fewer_than_k_at_max_length", 4, 11, 97, 6, -1.0, 0.0,
     lambda r, c, t: c["reached_max_length"] and c["fewer_than_k_finished"]),
    ("none_finished", 3, 8, 97, 5, -6.0, 0.0,
     lambda r, c, t: c["none_finished"] and c["reached_max_length"]),
    ("k_finished_not_eos_top", 3, 6, 61, 7, 0.8, 0.0,
     lambda r, c, t: c["reached_max_length"] and len(r["finished"]) >= 3 and not r["eos_top"]),
    ("ties_quantized", 5, 10, 127, 9, 0.5, 0.5,
     lambda r, c, t: len(r["finished"]) >= 2),
    ("done_after_several_steps", 4, 12, 127, 12, 1.2, 0.0,
     lambda r, c, t: c["stopped_by_done"] and r["steps"] >= 4 and not c["eos_at_step1_top"]),
    ("general_k10", 10, 20, 127, 16, 1.0, 0.0,
     lambda r, c, t: len(r["finished"]) >= 10 and c["several_finished_in_one_step"]),
    # K * 64 <= V * K: torch.topk's heap path; ties on a 0.5 grid that the two tie orders
    # resolve differently (the fixture's "torch_cpu" result differs from the main one).
    ("ties_torch_heap", 2, 130, 61, 9, 0.5, 0.5,
     lambda r, c, t: len(r["finished"]) >= 1 and t["rows"] != r["rows"]),
]


def write_fixtures(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name, beam_size, vocab, buckets, max_length, eos_bias, quantum, wanted in SCENARIOS:
        for seed in range(1, 5000):
            table = make_table(seed, buckets, vocab, eos_bias, quantum)
            out = beam_search(table_model(table), beam_size, max_length)
            cov = coverage(out, beam_size, max_length)
            torch_out = beam_search(table_model(table), beam_size, max_length, select=torch_topk)
            if wanted(out, cov, torch_out):
                break
        else:
            raise SystemExit(f"no seed found for scenario {name}")
        fixture = {
            "regenerate": "python3 tools/reference/beam.py --write-fixtures crates/c2n-model/tests/data",
            "scenario": name,
            "seed": seed,
            "beam_size": beam_size,
            "max_length": max_length,
            "vocab": vocab,
            "buckets": buckets,
            "sos": SOS,
            "eos": EOS,
            "hash": "h = 0; for tok in generated tokens: h = (h * 31 + tok + 7) % buckets",
            # repr of a Python float holding a float32 value round-trips exactly through f32.
            "table": [[float(x) for x in row] for row in table],
            "steps": out["steps"],
            "stopped_by_done": out["stopped_by_done"],
            "eos_top": out["eos_top"],
            "finished_by_advance": out["finished"],
            "coverage": cov,
            "final": out["final"],
            "hypotheses": out["hypotheses"],
            "rows": out["rows"],
            # The same search with torch.topk itself (CPU) ranking the candidates: the
            # torch-cpu tie order of the Rust crate must give exactly this.
            "torch_cpu": {
                **{key: torch_out[key] for key in
                   ("steps", "stopped_by_done", "eos_top", "final", "hypotheses", "rows")},
                "finished_by_advance": torch_out["finished"],
            },
        }
        path = os.path.join(out_dir, f"beam_{name}.json")
        with open(path, "w") as f:
            json.dump(fixture, f, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: seed {seed}, steps {out['steps']}, finished {len(out['finished'])}, {cov}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-fixtures", metavar="DIR", help="write beam_*.json toy-table fixtures")
    args = parser.parse_args()
    if args.write_fixtures:
        write_fixtures(args.write_fixtures)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
