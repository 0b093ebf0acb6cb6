"""tools/benchmark.py --quick: every section runs, the ratio table and the JSON are written."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_quick_prints_the_ratio_table(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "benchmark.py"), "--quick", "--json",
                           str(tmp_path / "b.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ratio" in proc.stdout and "target" in proc.stdout
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {r["section"] for r in rows} == {"model", "data", "metric", "eval"}
    assert all(r["segkit_s"] > 0 for r in rows)
    assert all(r["ratio"] > 0 for r in rows if r["section"] != "eval")
