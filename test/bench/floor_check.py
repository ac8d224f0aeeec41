#!/usr/bin/env python3
"""bench_floor reads every page and order it is given, and refuses a page the daemon would
refuse, naming it. No timing is asserted: the figures only have to be present and coherent."""
import json
import os
import subprocess
import sys
import tempfile

exe, pages = sys.argv[1], sys.argv[2]
p = subprocess.run([exe, pages, "2"], capture_output=True, text=True, check=False)
assert p.returncode == 0, p.stderr
out = json.loads(p.stdout)
with open(pages, encoding="utf-8") as f:
    lines = f.readlines()
want = sum(len(json.loads(line)["stockin_list"]) for line in lines)
assert out["orders"] == want, (out, want)
assert out["bytes_per_order"] == round(sum(len(line.encode()) for line in lines) / want), out
for k in ("parse_ms_per_order", "canon_hash_ms_per_order"):
    assert out[k] > 0, (k, out)
assert abs(out["prep_ms_per_order"] - out["parse_ms_per_order"]
           - out["canon_hash_ms_per_order"]) < 0.001, out

with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as bad:
    bad.write(lines[0])
    bad.write('{"code":0,"total_count":1,"stockin_list":[7]}\n')
try:
    p = subprocess.run([exe, bad.name], capture_output=True, text=True, check=False)
finally:
    os.unlink(bad.name)
assert p.returncode == 1 and "page 2" in p.stderr and "stockin_list[0]" in p.stderr, p
print("ok: %d orders, %s bytes each" % (out["orders"], out["bytes_per_order"]))
