#!/usr/bin/env bash
# The GPU checks in one run, for a lent device (about 10 minutes on an H100-class GPU; nothing is
# downloaded): the CUDA tests, then bench_models.py on CUDA (cold and warm diagnose beside the plain
# forward+backward script, peak GPU memory), results under ${OUT:-/tmp}/gpu.
#
#     OUT=/tmp/out bash benchmarks/gpu_check.sh
set -euo pipefail
out="${OUT:-/tmp}/gpu"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
python -m pytest -q -m cuda -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.txt"
timeout 480 python benchmarks/bench_models.py --device cuda --images 16 64 256 512 \
    --models timm:mobilenetv2_100 timm:efficientnet_b0 timm:resnet50 timm:convnext_tiny \
    timm:vit_small_patch16_224 timm:vit_base_patch16_224 torchvision:mobilenet_v3_large \
    transformers:ResNetForImageClassification \
    --out "$out/bench_models.json" | tee "$out/bench_models.md" || echo "bench_models stopped (time limit): rows so far in $out"
