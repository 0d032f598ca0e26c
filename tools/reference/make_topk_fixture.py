#!/usr/bin/env python3
"""Fixture for the torch-CPU tie order of beam search: ``torch.topk`` on tie-heavy inputs.

The reference ranks beam candidates with ``torch.topk(k, 0, True, True)``; on exactly equal
values the order it returns is whatever the CPU algorithm leaves (reference-semantics §11
item 17). ``crates/c2n-model/src/beam/torch_order.rs`` replays that algorithm; this writes
what torch itself returns, on inputs with many exact ties, both below and above the
``k * 64 <= n`` switch between its two algorithms, and with NaN, ±0, ±inf and −1e20.

Values are stored as small integer codes (value = code / 2, or a special value), so the file
stays small and both sides read exactly the same float32 numbers.

    python3 tools/reference/make_topk_fixture.py crates/c2n-model/tests/data/topk_torch_cpu.json
"""

import json
import sys

import torch

SPECIAL = {100: float("nan"), 101: -0.0, 102: float("inf"), 103: float("-inf"), 104: -1e20}

# (n, k, number of distinct codes): tie-heavy (few codes) and tie-light (many codes), on
# both sides of the k * 64 <= n switch; n = 10 * 50265 is a real beam step.
CASES = [
    (64, 1, 5), (640, 10, 9), (641, 10, 3), (1000, 3, 7), (3000, 10, 40), (50265, 10, 30),
    (502650, 10, 60),
    (3, 3, 2), (4, 2, 2), (10, 10, 3), (11, 10, 4), (17, 3, 3), (20, 10, 5), (50, 5, 4),
    (50, 10, 6), (100, 5, 3), (200, 10, 8), (300, 7, 200), (600, 10, 12), (639, 10, 5),
    (127, 2, 3), (129, 2, 3), (33, 1, 2),
]


def value(code: int) -> float:
    return SPECIAL.get(code, code / 2.0)


def main() -> None:
    out_path = sys.argv[1]
    gen = torch.Generator().manual_seed(17)
    cases = []
    for number, (n, k, distinct) in enumerate(CASES):
        codes = torch.randint(-distinct, 1, (n,), generator=gen)
        if number % 3 == 0 and n >= 20:
            # Specials at seeded positions (NaN ranks first in torch.topk).
            where = torch.randint(0, n, (5,), generator=gen)
            for position, code in zip(where.tolist(), [100, 101, 102, 104, 100]):
                codes[position] = code
        codes = codes.tolist()
        values = torch.tensor([value(c) for c in codes], dtype=torch.float32)
        top_values, top_indices = values.topk(k, 0, True, True)
        case = {"n": n, "k": k, "indices": top_indices.tolist()}
        if n <= 5000:
            case["codes"] = codes
        else:
            # Large cases: codes from a stated recipe the test recomputes (no 0.5 MB lists).
            case["recipe"] = f"code[i] = -((i * 7919 + (i >> 3) * 104729) % {distinct + 1})"
            codes = [-((i * 7919 + (i >> 3) * 104729) % (distinct + 1)) for i in range(n)]
            values = torch.tensor([value(c) for c in codes], dtype=torch.float32)
            case["indices"] = values.topk(k, 0, True, True)[1].tolist()
            case["distinct"] = distinct
        cases.append(case)
    fixture = {
        "regenerate": "python3 tools/reference/make_topk_fixture.py "
                      "crates/c2n-model/tests/data/topk_torch_cpu.json",
        "torch": torch.__version__,
        "value_of_code": "code / 2, except 100 NaN, 101 -0.0, 102 +inf, 103 -inf, 104 -1e20",
        "cases": cases,
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"{out_path}: {len(cases)} cases, torch {torch.__version__}")


if __name__ == "__main__":
    main()
