#!/usr/bin/env bash
# `make demo`: builds the demo image (Debian bookworm + GNU hello compiled from the
# Debian pool's pinned source), signs it with a local key, verifies it and runs hello in it.
set -euo pipefail
cd "$(dirname "$0")/.."
IMGBUILD=$PWD/build/imgbuild
keydir=${XDG_CONFIG_HOME:-$HOME/.config}/imgbuild/keys
if [ ! -f "$keydir/demo.sec" ]; then
	"$IMGBUILD" keygen demo -d "$keydir"
fi
start=$(date +%s.%N)
"$IMGBUILD" manifests/demo.toml -o build/demo.tar --sign "$keydir/demo.sec"
built=$(date +%s.%N)
"$IMGBUILD" verify build/demo.tar --key "$keydir/demo.pub"
# The key is the user's own, not a trusted one (keys/ or ~/.config/imgbuild/trusted):
# run is told which key to trust, as verify is.
"$IMGBUILD" run build/demo.tar --key "$keydir/demo.pub" -- hello
end=$(date +%s.%N)
awk -v s="$start" -v b="$built" -v e="$end" \
	'BEGIN { printf "demo: build %.1f s, verify + run %.1f s, total %.1f s\n", b - s, e - b, e - s }'
