#!/usr/bin/env bash
# bench/vlm.py on a lent GPU machine (the device tool), prepared here so the device time goes to measuring.
#
#   here:   bench/gpu.sh prepare             wheels the GPU image lacks (for its Python 3.12) + the CJK font,
#                                            into .gpu/ (git-ignored; carry it: carry=[".gpu"])
#   there:  bench/gpu.sh run QUANT [ARGS]    QUANT none|int8; one precision per call (10-minute limit);
#                                            writes $OUT/vlm_QUANT.json, .log and the GPU's name and clocks
#
# The image (device tool, KINDS.md) has torch 2.11, transformers 5.17, pillow, numpy, prometheus-client and
# pytest, but not pydantic or torchao. PYVER / PYTHON override the target Python for a local dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
PYTHON=${PYTHON:-python3}
WHEELS="pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 torchao==0.18.0"

prepare() {
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
  rm -rf .gpu && mkdir -p .gpu/whl
  cp /usr/share/fonts/truetype/wqy/wqy-microhei.ttc .gpu/
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl $WHEELS
  du -sh .gpu
}

run() {
  local quant=$1
  shift
  : "${OUT:?set OUT to the output folder (the device tool sets it)}"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site MEMEGUARD_CJK_FONT=.gpu/wqy-microhei.ttc PYTHONUNBUFFERED=1
  local versions='import torch, transformers, torchao; print(torch.__version__, transformers.__version__, torchao.__version__)'
  {
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv || echo "no nvidia-smi"
    echo "torch transformers torchao: $("$PYTHON" -c "$versions")"
  } 2>&1 | tee "$OUT/vlm_$quant.env"
  "$PYTHON" bench/vlm.py --quants "$quant" --json "$OUT/vlm_$quant.json" "$@" 2>&1 | tee "$OUT/vlm_$quant.log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "${1:?none or int8}" "${@:2}" ;;
  *) echo "usage: bench/gpu.sh prepare | run none|int8 [bench/vlm.py args]" >&2; exit 2 ;;
esac
