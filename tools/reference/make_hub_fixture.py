#!/usr/bin/env python3
"""Writes a tiny parquet file the way the Hugging Face datasets library / pyarrow does
(snappy, nullable columns, `list<string>` token columns), with the CodeXGLUE code-to-text
column names, from the first lines of a reference jsonl split. c2n-data's hub converter must
turn it back into the same examples as the jsonl lines (crates/c2n-data/tests/hub.rs).

Regenerate (needs `pip install pyarrow`):
    python3 tools/reference/make_hub_fixture.py \
        ../shared/data/codesearchnet/ruby/test.jsonl 6 \
        crates/c2n-data/tests/data/hub/ruby-test-head.parquet \
        crates/c2n-data/tests/data/hub/ruby-test-head.jsonl
"""
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ["repo", "path", "func_name", "original_string", "language", "code",
           "code_tokens", "docstring", "docstring_tokens", "sha", "url"]


def main() -> None:
    source, count, parquet_out, jsonl_out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with open(source, encoding="utf-8") as f:
        lines = [next(f).rstrip("\n") for _ in range(count)]
    records = [json.loads(line) for line in lines]
    table = pa.table({
        "id": pa.array(range(len(records)), type=pa.int32()),
        **{c: pa.array([r[c] for r in records],
                       type=pa.list_(pa.string()) if c.endswith("_tokens") else pa.string())
           for c in COLUMNS},
    })
    pq.write_table(table, parquet_out, compression="snappy")
    with open(jsonl_out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
