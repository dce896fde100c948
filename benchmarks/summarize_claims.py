"""Collects the claims run's eval JSONs into one table: python benchmarks/summarize_claims.py WORKDIR"""

import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
out = {}
for path in sorted(work.glob("*.json")):
    rows = json.loads(path.read_text())["results"]
    out[path.stem] = [{k: r.get(k) for k in ("iters", "miou", "pixel_acc", "tag_f1", "input_tag_f1")} for r in rows]
print(json.dumps(out, indent=1))
