#!/usr/bin/env bash
# Prepares a run of tools/device_check.sh on a lent GPU machine (see ../.library/device/README.md): builds
# here, then puts what the check needs into two folders git ignores, to be named in the device call's `carry`:
#   .devbin/  the wgsd binary, the kernel test binary, the published SD configs (the machine has no Rust and
#             ../shared does not travel)
#   .gl/      the Vulkan loader packages (the machine has the NVIDIA driver but no loader)
# Then: run(command="bash tools/device_check.sh", carry=[".devbin", ".gl"], timeout_s=540).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.devbin/' .git/info/exclude 2>/dev/null || echo /.devbin/ >> .git/info/exclude
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
cargo build --release
kernels=$(cargo test --release --test kernels --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*kernels-[^"]*"' | head -1 | cut -d'"' -f4)
rm -rf .devbin && mkdir -p .devbin
cp target/release/wgsd .devbin/
cp "$kernels" .devbin/kernels
cp -r ../shared/fixtures/configs .devbin/configs
if [ ! -d .gl ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1)
fi
du -sh .devbin .gl
