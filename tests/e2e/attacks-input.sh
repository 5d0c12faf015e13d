#!/usr/bin/env bash
# Issue 14, the input half: hostile manifests, stages, images, downloads and
# cache entries try to reach the host, and each attack is really performed and
# seen to fail, with the host unchanged (docs/reliability.md, "Threat model").
source "$(dirname "$0")/../lib.sh"
require_root
cd "$TMP"
# A host file every attack aims at, and its digest to see it unchanged.
mkdir -p "$TMP/host" "$TMP/home/.config/imgbuild/keys"
echo "host secret $$" >"$TMP/host/secret"
echo "ssh-ed25519 AAAA the-owner" >"$TMP/host/authorized_keys"
cp "$TEST_KEY" "$TMP/home/.config/imgbuild/keys/me.sec"
host_sum() { sha256sum "$TMP/host/secret" "$TMP/host/authorized_keys" "$TMP/home/.config/imgbuild/keys/me.sec"; }
HOST_BEFORE=$(host_sum)
host_unchanged() { [ "$(host_sum)" = "$HOST_BEFORE" ] && [ "$(ls -A "$TMP/host" | wc -l)" -eq 2 ]; }

# --- 3: [image] output and sign from a manifest ---------------------------------
# A stranger's project: the manifest names the owner's key and a path outside.
P=$TMP/stranger
mkdir -p "$P/stages" "$P/out"
printf 'set -eu\ntrue\n' >"$P/stages/s.sh"
hostile_manifest() {	# FILE IMAGE-LINES
	printf '[image]\nname = "stranger"\nsource_date_epoch = 1577836800\n%s\n\n[base]\ndistro = "debian"\nsuite = "bookworm"\n\n[[stage]]\nname = "s"\nscript = "stages/s.sh"\n' "$2" >"$1"
}
hostile_manifest "$P/out.toml" "output = \"$TMP/host/authorized_keys\""
check_fails "3: a manifest's output outside its project is refused, naming file, line, key and fix" 2 \
	"out\.toml:4:10: image\.output '$TMP/host/authorized_keys' is in $TMP/host, outside the project $P \(hint: .*imgbuild build -o OUT\)" \
	"$IMGBUILD" build "$P/out.toml"
ln -s "$TMP/host" "$P/out/link"
hostile_manifest "$P/link.toml" 'output = "out/link/authorized_keys"'
check_fails "3: ... also through a symbolic link inside the project" 2 \
	"link\.toml:4:10: image\.output 'out/link/authorized_keys' is in $TMP/host, outside the project" \
	"$IMGBUILD" build "$P/link.toml"
hostile_manifest "$P/sign.toml" 'sign = "~/.config/imgbuild/keys/me.sec"'
check_fails "3: a manifest naming the builder's key is refused" 2 \
	"sign\.toml:4:8: image\.sign '~/\.config/imgbuild/keys/me\.sec' names a key of the person building.*--sign KEY" \
	env HOME="$TMP/home" "$IMGBUILD" build "$P/sign.toml"
ln -s "$TMP/home/.config/imgbuild/keys/me.sec" "$P/key.sec"
hostile_manifest "$P/signlink.toml" 'sign = "key.sec"'
check_fails "3: ... also through a symbolic link inside the project" 2 \
	"signlink\.toml:4:8: image\.sign 'key\.sec' is not a key file inside the project" \
	"$IMGBUILD" build "$P/signlink.toml"
check "3: the host's files are unchanged, no image was written" \
	bash -c "$(declare -f host_sum host_unchanged); HOST_BEFORE='$HOST_BEFORE' TMP='$TMP'; host_unchanged && ! ls '$P'/*.tar '$P'/out/*.tar 2>/dev/null"
