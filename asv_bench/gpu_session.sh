#!/usr/bin/env bash
# Every GPU check still owed (issues 3-5) in one device run (H100 or H200), sized for a 15-minute device budget:
#   1. versions and the GPU's name;
#   2. the tests marked `gpu` (cuda backend against numba up to d = 1e8, the certificate, the adversarial
#      ramp, torch CUDA tensors), stopping at the first failure;
#   3. asv_bench/bench_cuda.py: the performance table of issue 3 and the design variants (unsort direct or
#      partitioned, tile stage chunked or sequential), as JSON.
# Everything lands in $OUT (logs, JSON); nothing else is written outside /tmp.
#
# Before the run, once per checkout (the device image's numpy 2.5 breaks numba-cuda's kernel compilation):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 -d .whl numpy==2.4.6
# Then, from the device tool:  run(command="bash asv_bench/gpu_session.sh", carry=[".whl"], timeout_s=590)
# Afterwards: copy $OUT/cuda_gpu.json to asv_bench/results/ (named after the GPU) and cite it in the docs; draw its
# figure here (the device image may lack matplotlib):
#   python asv_bench/bench_cuda.py asv_bench/results/<file>.json --replot --plot docs/_static/<file>.png
# The JSON is rewritten after every measured step, so a run cut short by the time limit still leaves its rows.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/wsprox-gpu}
mkdir -p "$OUT"
export NUMBA_CACHE_DIR=/tmp/wsprox-numba-cache
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 2; }
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "no .whl/ carried: using the image's numpy (numba-cuda may fail to compile kernels with numpy 2.5)"
    export PYTHONPATH=$PWD
fi
start=$SECONDS

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 - <<'EOF'
import importlib.metadata as md
for name in ("numpy", "numba", "numba-cuda", "torch", "cupy-cuda13x", "cupy-cuda12x"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
import wsprox
print("wsprox", wsprox.__version__, {k: (v.available, v.reason) for k, v in wsprox.backends().items()})
EOF
} 2>&1 | tee "$OUT/versions.txt"

echo "== gpu tests ($((SECONDS - start)) s)"
timeout 240 python3 -m pytest -m gpu -x -q -p no:cacheprovider -o addopts="" -rs \
    tests/test_cuda_sim.py tests/test_torch.py 2>&1 | tee "$OUT/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}

echo "== bench_cuda ($((SECONDS - start)) s)"
timeout 300 python3 asv_bench/bench_cuda.py "$OUT/cuda_gpu.json" --repeat 10 --warmup 2 --imminent-timeout 10 \
    2>&1 | tee "$OUT/bench_cuda.log"
bench_rc=${PIPESTATUS[0]}

echo "== done in $((SECONDS - start)) s: gpu tests rc=$tests_rc, bench_cuda rc=$bench_rc"
exit $((tests_rc != 0 || bench_rc != 0))
