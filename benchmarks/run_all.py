"""`make bench`: every benchmark in one run (see docs/performance.md for the numbers).

    python benchmarks/run_all.py [--quick]

Each script writes its current result to benchmarks/results/. The one-off diagnostics in
benchmarks/experiments/ are not run here (docs/history.md has what they decided).
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["speed.py", "wscnn_tables.py", "deepyeast_mitosis.py", "deepyeast_synthetic.py", "discovery.py",
           "time_to_accuracy.py", "segmentation.py", "transfer.py", "wscnn_field.py", "plates.py", "similar.py"]
# not here: predict_fields.py (wants a trained model: --model demo-output/model.safetensors after
# `make demo ARGS=--headless`) and viewer_stalls.py (a real viewer under Xvfb); both time the
# machine, so run them alone on an idle one
# wscnn_tables.py already records the WSCNN time-to-accuracy curve of its max-head run
OWN_ARGS = {"time_to_accuracy.py": ["--skip-wscnn"]}

if __name__ == "__main__":
    extra = sys.argv[1:]
    failed = []
    for s in SCRIPTS:
        print(f"\n===== {s} =====", flush=True)
        if subprocess.call([sys.executable, str(HERE / s), *OWN_ARGS.get(s, []), *extra], cwd=HERE) != 0:
            failed.append(s)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
