#!/usr/bin/env bash
# imgbuild export (issue 16) against the real consumers: the demo image (shared
# test cache, signed with the test key) exported as an OCI archive and as a
# layout folder; the same bytes from two exports at other times and folders;
# skopeo inspect shows the labels and the config; podman loads it and runs
# hello from it; umoci unpacks the layout into a tree whose every file has the
# digest the image's listing records; a changed layer byte is refused by
# skopeo and by podman; an image that does not verify is not exported.
# podman gets a storage root of its own under $TMP, removed at the end.
source "$(dirname "$0")/../lib.sh"
require_root
for t in podman skopeo umoci python3; do
	if ! command -v "$t" >/dev/null; then
		skip "$t not installed (make deps)"
		finish
	fi
done
use_debian_test_cache
cd "$TMP" || exit 1
mkdir -p out
IMG=$TMP/out/demo.tar

if "$IMGBUILD" build "$REPO/manifests/demo.toml" -o "$IMG" --sign "$TEST_KEY" --build-dir "$TMP/bd" >build.out 2>&1; then
	ok "the demo image builds (signed with the test key)"
else
	not_ok "the demo image builds"
	sed 's/^/# /' build.out | tail -n 30
	finish
fi
IMG_SHA=$(cut -d' ' -f1 "$IMG.sha256")
KEYNUM=$(sed -n 2p "$TEST_PUB" | base64 -d | od -An -tx1 -j2 -N8 | tr -d ' \n')

# --- export, twice: the same bytes ---
mkdir -p a
OCI=$TMP/a/demo-oci.tar
if "$IMGBUILD" export "$IMG" -o "$OCI" --key "$TEST_PUB" >a.out 2>&1 && test -s "$OCI"; then
	ok "export writes an OCI archive"
else
	not_ok "export writes an OCI archive"
	sed 's/^/# /' a.out | tail
	finish
fi
sed -n 's/^imgbuild: exported/#   exported/p' a.out
# The second export: later, from a copy of the image in another folder, another working directory.
mkdir -p elsewhere/deeper b
cp "$IMG" "$IMG.sha256" "$IMG.sig" elsewhere/deeper/
sleep 1
(cd b && "$IMGBUILD" export ../elsewhere/deeper/demo.tar -o "$TMP/b/second.tar" --key "$TEST_PUB" >../b.out 2>&1) || true
check "the second export at another time and place has the same sha256" \
	test "$(sha256sum <"$OCI")" = "$(sha256sum <"$TMP/b/second.tar")"
MANIFEST=$(tail -n 1 a.out)
check "the manifest digest is printed and is the same both times ($MANIFEST)" \
	sh -c "echo '$MANIFEST' | grep -qE '^sha256:[0-9a-f]{64}$' && test '$MANIFEST' = \"\$(tail -n 1 b.out)\""
# The archive is the layout, tarred: its extraction is checked as a layout.
mkdir -p gzlayout && tar -xf "$OCI" -C gzlayout
# -o DIR/ (uncompressed layer, which umoci reads below without a gunzip).
check "export -o DIR/ writes the layout as a folder" sh -c \
	"'$IMGBUILD' export '$IMG' -o '$TMP/layout/' --compression none --key '$TEST_PUB' >layout.out 2>&1 && test -f layout/oci-layout && test -f layout/index.json && test -f layout/blobs/sha256/\$(tail -n 1 layout.out | cut -d: -f2)"
check "--compression none: the layer blob is the image, byte for byte" cmp "$IMG" "$TMP/layout/blobs/sha256/$IMG_SHA"

# The layout's structure: one manifest with a ref name, one gzip layer whose
# uncompressed digest is the image's own sha256 (the layer is the image's tar).
check_layout() {
	python3 - "$TMP/gzlayout" "$IMG_SHA" <<'EOF'
import json, sys, gzip, hashlib
d, img = sys.argv[1], sys.argv[2]
blob = lambda dg: open(f"{d}/blobs/sha256/{dg.split(':')[1]}", "rb").read()
idx = json.load(open(f"{d}/index.json"))
assert len(idx["manifests"]) == 1, idx
ref = idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
m = json.loads(blob(idx["manifests"][0]["digest"]))
assert len(m["layers"]) == 1 and m["layers"][0]["mediaType"].endswith("tar+gzip"), m
layer = blob(m["layers"][0]["digest"])
assert hashlib.sha256(layer).hexdigest() == m["layers"][0]["digest"].split(":")[1]
assert layer[:10] == bytes([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), layer[:10]  # no name, no time
raw = gzip.decompress(layer)
assert hashlib.sha256(raw).hexdigest() == img, "layer is not the image"
c = json.loads(blob(m["config"]["digest"]))
assert c["rootfs"]["diff_ids"] == ["sha256:" + img], c["rootfs"]
print("ref", ref, "layer", len(layer), "of", len(raw))
EOF
}
check "the archive: one manifest, one deterministic gzip layer whose content is the image" check_layout

# --- skopeo ---
skopeo inspect "oci-archive:$OCI" >inspect.json 2>skopeo.err || cat skopeo.err
skopeo inspect --config "oci-archive:$OCI" >config.json 2>>skopeo.err || cat skopeo.err
check_labels() {
	python3 - "$IMG_SHA" "$KEYNUM" <<'EOF'
import json, sys
img, keynum = sys.argv[1], sys.argv[2]
i = json.load(open("inspect.json"))
l = i["Labels"]
want = {"imgbuild.name": "demo", "imgbuild.image.sha256": img, "imgbuild.signer.keynum": keynum,
        "imgbuild.cuda": "", "imgbuild.archs": "", "imgbuild.min_driver": ""}
assert l == want, (l, want)
assert i["Created"] == "2023-11-14T22:13:20Z", i["Created"]  # the manifest's SOURCE_DATE_EPOCH 1700000000
assert i["Architecture"] == "amd64" and i["Os"] == "linux", i
print(json.dumps(l))
EOF
}
check "skopeo inspect oci-archive: shows the labels (name, cuda, archs, min_driver, sha256, keynum $KEYNUM)" check_labels
check_config() {
	python3 - <<'EOF'
import json
c = json.load(open("config.json"))["config"]
assert c["Cmd"] == ["/bin/sh"], c
assert c["WorkingDir"] == "/", c
env = dict(e.split("=", 1) for e in c["Env"])
assert env["HOME"] == "/root" and "/usr/bin" in env["PATH"], env
EOF
}
check "the config: Cmd [/bin/sh], WorkingDir, Env as imgbuild run sets it" check_config

# --- podman: a storage of its own, removed at the end ---
PODMAN=(podman --root "$TMP/podman/root" --runroot "$TMP/podman/run" --storage-driver vfs --runtime /usr/sbin/runc)
cleanup_podman() {
	"${PODMAN[@]}" rmi -a -f >/dev/null 2>&1 || true
}
trap 'cleanup_podman; _lib_cleanup' EXIT
# --- a changed layer byte, before podman has the good layer (it does not
# read a blob whose digest it already stores) ---
corrupt() {
	python3 - "$OCI" "$TMP/bad.tar" <<'EOF'
import sys, tarfile, shutil
src, dst = sys.argv[1], sys.argv[2]
shutil.copyfile(src, dst)
with tarfile.open(src) as t:
    big = max((m for m in t.getmembers() if m.isfile()), key=lambda m: m.size)
with open(dst, "r+b") as f:
    off = big.offset_data + big.size // 2
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x01]))
EOF
}
corrupt
check_fails "skopeo refuses a changed layer byte (digest check)" 1 "[Dd]igest|checksum|does not match" \
	skopeo copy "oci-archive:$TMP/bad.tar" "oci:$TMP/badcopy:x"
rc=0
"${PODMAN[@]}" load -i "$TMP/bad.tar" >badload.out 2>&1 || rc=$?
why=$(grep -oiE '(digest|checksum|flate|gzip)[^"]{0,60}' badload.out | head -n 1 || true)
check "podman load refuses a changed layer byte (exit $rc: $why)" test "$rc" -ne 0
podman_empty() { [ -z "$("${PODMAN[@]}" images -q)" ]; }
check "podman stored nothing from it" podman_empty
rm -f "$TMP/bad.tar"

if "${PODMAN[@]}" load -i "$OCI" >load.out 2>&1; then ok "podman load -i OUT.tar"; else
	not_ok "podman load -i OUT.tar"
	sed 's/^/# /' load.out | tail
fi
REF=$(sed -nE 's/^Loaded image(\(s\))?: //p' load.out | head -n 1)
diag "podman loaded: $REF"
hello_in_podman() {
	local got
	got=$("${PODMAN[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$REF" hello)
	echo "podman run printed: $got"
	[ "$got" = "Hello, world!" ]
}
check "podman run --rm of the export runs hello: 'Hello, world!'" hello_in_podman
podman_label() {
	[ "$("${PODMAN[@]}" image inspect --format '{{index .Labels "imgbuild.image.sha256"}}' "$REF")" = "$IMG_SHA" ]
}
check "podman sees the image's sha256 label" podman_label

# --- umoci: every file has the digest the listing records ---
check "umoci unpack of the layout" umoci unpack --image "$TMP/layout:$(python3 -c 'import json;print(json.load(open("layout/index.json"))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])')" "$TMP/bundle"
check_tree() {
	python3 - "$TMP/bundle/rootfs" <<'EOF'
import hashlib, os, re, stat, sys
root = sys.argv[1]
unesc = lambda s: re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), s)
lines = open(os.path.join(root, ".imgbuild/listing"), "rb").read().split(b"\n")
assert lines[0] == b"imgbuild-listing 1", lines[0]
files = bad = 0
for ln in lines[1:]:
    if not ln:
        continue
    t, mode, uid, gid, size, sha, path, target = ln.split(b" ")
    p = os.path.join(root.encode(), unesc(path)[2:]) if path != b"." else root.encode()
    st = os.lstat(p)
    kind = {b"f": stat.S_ISREG, b"h": stat.S_ISREG, b"d": stat.S_ISDIR, b"l": stat.S_ISLNK}[t](st.st_mode)
    if not kind or (stat.S_IMODE(st.st_mode) != int(mode, 8) and t != b"l"):
        bad += 1; print("type/mode differs:", path); continue
    if t == b"f":
        files += 1
        if hashlib.sha256(open(p, "rb").read()).hexdigest().encode() != sha:
            bad += 1; print("digest differs:", path)
    if t == b"l" and os.readlink(p) != unesc(target):
        bad += 1; print("link differs:", path)
print(files, "files checked,", bad, "differ")
sys.exit(1 if bad or files < 100 else 0)
EOF
}
check "the unpacked tree: every file's digest, type and mode as the imgbuild listing records" check_tree

# --- never an unverified image ---
cp "$IMG" "$IMG.sha256" "$IMG.sig" elsewhere/
python3 -c "
import sys; p = sys.argv[1]; f = open(p, 'r+b'); f.seek(20000); b = f.read(1); f.seek(20000); f.write(bytes([b[0] ^ 1]))" elsewhere/demo.tar
check_fails "a tampered image is not exported" 1 "not exported" \
	"$IMGBUILD" export elsewhere/demo.tar -o "$TMP/tampered.tar" --key "$TEST_PUB"
check "nothing is left at the output path or beside it" sh -c "! ls '$TMP' | grep -q tampered"
check_fails "an image signed by an untrusted key is not exported" 1 "not exported.*(untrusted|signature)" \
	"$IMGBUILD" export "$IMG" -o "$TMP/untrusted.tar"
check_fails "an existing output is not overwritten" 2 "exists" \
	"$IMGBUILD" export "$IMG" -o "$OCI" --key "$TEST_PUB"

# --- zstd ---
check "export --compression zstd: skopeo copies it (checking every digest)" sh -c \
	"'$IMGBUILD' export '$IMG' -o '$TMP/zstd.tar' --compression zstd --key '$TEST_PUB' >/dev/null 2>&1 && skopeo copy 'oci-archive:$TMP/zstd.tar' 'oci:$TMP/copy-zstd:x' >/dev/null && skopeo inspect --raw 'oci-archive:$TMP/zstd.tar' | grep -q 'tar+zstd'"
finish
