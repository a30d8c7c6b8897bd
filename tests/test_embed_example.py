"""examples/train_dlrm.py end to end: a DLRM-style model whose sparse features live in a
keel.embed table with a DRAM budget far below the table, an SSD tier and admission; it must
learn (held-out AUC) while rows move between the tiers."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("KEEL_BUILD_DIR", ROOT / "build")).resolve()


def test_dlrm_example_learns_with_a_tiny_dram_budget(tmp_path):
    r = subprocess.run([sys.executable, "examples/train_dlrm.py", "--steps", "100",
                        "--dram-budget", "512KiB", "--ssd-path", str(tmp_path / "emb"),
                        "--admit-after", "2"], capture_output=True, text=True, timeout=300,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(BUILD / "python")})
    assert r.returncode == 0, r.stderr[-2000:]
    aucs = [float(x) for x in re.findall(r"test auc ([\d.]+)", r.stdout)]
    assert aucs and aucs[-1] > 0.85, r.stdout
    m = re.search(r"(\d+) rows in DRAM .* (\d+) on SSD", r.stdout)
    assert m and int(m.group(2)) > int(m.group(1)) > 0, r.stdout
