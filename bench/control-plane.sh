#!/usr/bin/env bash
# Control-plane scale figures (issue 5 / issue 8): 10,000 pods and 1,000 services in
# generated YAML, the real `weft control` process, 100 delta xDS clients over TLS, 20
# policy-file edits. Prints a Markdown table (copy it into bench/README.md).
#
#   bench/control-plane.sh            # full run
#   bench/control-plane.sh --small    # 1,000 pods / 100 services, 10 clients, 5 edits
#   bench/control-plane.sh --clients 50 --edits 40   # any flags of the example
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
if [[ "${1:-}" == "--small" ]]; then
    args=(--small --clients 10 --edits 5 "${@:2}")
fi

cargo build --release --quiet -p weft --bin weft
cargo build --release --quiet -p weft-control --example control_plane_bench
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"

echo "machine: $(nproc) cores, $(sed -n 's/model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
"$target_dir/release/examples/control_plane_bench" --weft "$target_dir/release/weft" "${args[@]}"
