#!/usr/bin/env bash
# Type-checks (and lints) qp2p for Windows and macOS from a Linux machine:
#   scripts/cross-check.sh                      # cargo clippy --all-targets --locked -- -D warnings
#   scripts/cross-check.sh check --all-targets  # or any cargo subcommand and its arguments
# for x86_64-pc-windows-gnu, x86_64-apple-darwin and aarch64-apple-darwin. Run it from
# anywhere. It installs what it needs when missing (the rustup targets; clang and mingw
# through apt). Nothing is linked or run: this proves the code compiles for those
# platforms, not that it works there. Output goes to target/cross (CROSS_TARGET_DIR).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."
targets=(x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin)
cmd=("$@")
[ ${#cmd[@]} -gt 0 ] || cmd=(clippy --all-targets --locked -- -D warnings)

installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
need=()
command -v clang >/dev/null || need+=(clang)
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# ring compiles a little C for the target. For Windows, mingw is a whole cross compiler.
# For macOS there is no SDK here: clang in freestanding mode with the three stub headers
# in macos-stub-include/ compiles ring's C files, which is all a type-check needs.
mac_cflags="-ffreestanding -nostdlibinc -I$here/macos-stub-include"
export CC_x86_64_apple_darwin=clang CFLAGS_x86_64_apple_darwin="$mac_cflags"
export CC_aarch64_apple_darwin=clang CFLAGS_aarch64_apple_darwin="$mac_cflags"
export CARGO_TARGET_DIR="${CROSS_TARGET_DIR:-target/cross}"

rc=0
for t in "${targets[@]}"; do
    echo "==> cargo ${cmd[0]} --target $t"
    cargo "${cmd[0]}" --target "$t" "${cmd[@]:1}" || rc=1
done
exit $rc
