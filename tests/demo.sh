#!/usr/bin/env bash
# `make demo`: builds the demo image (Debian bookworm + GNU hello compiled from the
# Debian pool's pinned source), signs it with a local key, verifies it and runs hello in it.
set -euo pipefail
cd "$(dirname "$0")/.."
IMGBUILD=$PWD/build/imgbuild
keydir=${XDG_CONFIG_HOME:-$HOME/.config}/imgbuild/keys
if [ ! -f "$keydir/demo.sec" ]; then
	# keygen also trusts the key for this user (~/.config/imgbuild/trusted/demo.pub).
	"$IMGBUILD" keygen demo -d "$keydir"
else
	# A key made before keygen trusted its keys: trust it now (a no-op when it is).
	"$IMGBUILD" trust add "$keydir/demo.pub" --name demo
fi
start=$(date +%s.%N)
"$IMGBUILD" manifests/demo.toml -o build/demo.tar --sign "$keydir/demo.sec"
built=$(date +%s.%N)
# The user's own key is trusted: no --key needed, as for any key in `imgbuild trust list`.
"$IMGBUILD" verify build/demo.tar
"$IMGBUILD" run build/demo.tar -- hello
end=$(date +%s.%N)
awk -v s="$start" -v b="$built" -v e="$end" \
	'BEGIN { printf "demo: build %.1f s, verify + run %.1f s, total %.1f s\n", b - s, e - b, e - s }'
