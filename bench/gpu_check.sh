#!/usr/bin/env bash
# The cuda backend's GPU check, prepared to run once in a session that is lent an H100/H200.
#
# Such a session has ~15 minutes of device time in all, one command of at most 10 minutes, and
# a machine that reaches no package index. So the check is one command, bounded by timeouts:
#   1. `qmd-ft bench --backend cuda --model-shape qwen3-1.7b --upstream-recipe` (ours vs QMD's
#      upstream recipe: SFT tokens/s, GRPO s/step, generation tokens/s at batch 16)
#   2. `pytest -m gpu` over the cuda tests (bf16, packed-attention kernels, the 151,936-token
#      fused head, compiled decoding vs HF generate, liger when installed, auto memory sizing)
# and everything it learns goes to $OUT (nvidia-smi, versions, bench JSON and log, test log).
#
# Usage, in two steps:
#   here, where pip reaches PyPI (once):   bench/gpu_check.sh --fetch-wheels
#       downloads the lock's versions of what the device image lacks into .whl/ (git-ignored
#       through .git/info/exclude, ~25 MiB)
#   then the device tool's `run`:          command "bash bench/gpu_check.sh", carry [".whl"],
#                                          timeout_s 600
# Record the results (GPU, versions, command, numbers) in README.md and bench/README.md.
set -uo pipefail

# What the device image (python 3.12, torch, triton, accelerate, tokenizers, safetensors, pyarrow,
# pandas, fsspec, rich, typer...) lacks or holds at another version than requirements.lock;
# setuptools >= 77 builds the editable install (`qmd_ft.backends` maps to backends/). If
# `datasets` then refuses the image's pyarrow (it needs >= 24), add pyarrow==26.0.1 (~40 MiB).
WHEELS=(
  transformers==5.25.0 trl==1.16.0 peft==0.21.2 accelerate==1.16.0 datasets==5.2.0 dill==0.4.1
  multiprocess==0.70.19 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 gguf==0.19.0 huggingface-hub==2.4.0 fsspec==2026.9.0
  typer==0.29.2 rich==15.0.0 httpx2==2.16.2 kernels==0.19.1 click==8.5.1
  httpcore2==2.16.2 truststore==0.10.5 tomlkit==0.15.3 idna==3.20 setuptools==80.9.0
)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  exclude="$(git rev-parse --git-common-dir)/info/exclude"
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
  platforms=()
  for n in 28 27 17; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 \
    --platform any -d .whl "${WHEELS[@]}"
fi

OUT=${OUT:-outputs/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1
log() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/steps.txt"; }

log "install: the carried wheels, then this checkout (no index on this machine)"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { log "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . \
  || { log "pip install -e . failed"; exit 1; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 - > "$OUT/versions.txt" 2>&1 <<'EOF'
import importlib.metadata as md
import torch
print("gpu", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability())
for name in ("torch", "triton", "transformers", "trl", "peft", "accelerate", "datasets",
             "flash-attn", "liger-kernel", "vllm"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
EOF

log "bench: qmd-ft bench --backend cuda --model-shape qwen3-1.7b --upstream-recipe"
timeout 320 python3 -m qmd_ft bench --backend cuda --model-shape qwen3-1.7b --upstream-recipe \
  --json --sft-steps 8 --grpo-steps 2 --warmup 1 > "$OUT/bench.json" 2> "$OUT/bench.log"
log "bench exit $?"

log "tests: pytest -m gpu"
timeout 230 python3 -m pytest -q -m gpu -p no:cacheprovider \
  tests/test_cuda_gpu.py tests/test_cuda_sft.py > "$OUT/pytest-gpu.txt" 2>&1
log "pytest exit $?"
