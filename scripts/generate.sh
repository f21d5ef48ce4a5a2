#!/bin/sh
# Regenerates the shell completions (completions/) and man pages (man/) from the clap
# definitions in src/cli/, with the debug binary. Run it from anywhere after adding or
# changing a subcommand, an option or a help text, and commit what changed; until then
# `cargo test --test tests generated` fails and prints this command.
#
# The output has no date, version or environment in it, so running this twice gives
# the same files.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --bin qp2p
bin="${CARGO_TARGET_DIR:-target}/debug/qp2p"

# Options read QP2P_* variables; none may leak into what is generated.
for var in $(env | sed -n 's/^\(QP2P_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$var"
done

rm -rf completions man
mkdir -p completions man
"$bin" completions bash > completions/qp2p.bash
"$bin" completions zsh > completions/_qp2p
"$bin" completions fish > completions/qp2p.fish
"$bin" completions elvish > completions/qp2p.elv
"$bin" completions powershell > completions/_qp2p.ps1
"$bin" man --dir man
echo "regenerated completions/ ($(ls completions | wc -l) files) and man/ ($(ls man | wc -l) pages)"
