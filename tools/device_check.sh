#!/usr/bin/env bash
# The GPU check for a session that draws a device machine (prepare with tools/device_prepare.sh): every
# kernel against its CPU twin on the real GPU (the GPU tile variants are otherwise only run on lavapipe),
# the kernel table, and the real-size SD 1.5 UNet and VAE with a per-op profile. Figures go to stdout and
# $OUT/device.log; paste them into the issue note with the device's name.
set -uo pipefail
cd "$(dirname "$0")/.."
# The loader, unless the machine has one.
if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export XDG_RUNTIME_DIR=/tmp WGSD_BACKEND=vulkan
log=${OUT:-/tmp}/device.log
B=.devbin
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $B/wgsd devices
  echo "== kernels against their CPU twins"
  timeout ${KERNEL_TIMEOUT:-240} $B/kernels --test-threads=4 2>&1 | grep -E "test result|FAILED|panicked" | head -20
  echo "== bench kernels"
  timeout ${BENCH_TIMEOUT:-120} $B/wgsd bench kernels
  echo "== bench models"
  timeout ${MODELS_TIMEOUT:-180} $B/wgsd bench models --configs $B/configs/sd15 --profile
  # Winograd convolutions are off on GPUs (auto) because they were never measured on one: the UNet with
  # the direct kernels and with every eligible conv in Winograd F(4x4), side by side.
  for conv in direct winograd; do
    echo "== bench models --unet-only, WGSD_CONV=$conv"
    WGSD_CONV=$conv timeout ${CONV_TIMEOUT:-90} $B/wgsd bench models --configs $B/configs/sd15 --unet-only --precision f16 --profile
  done
} 2>&1 | tee "$log"
