#!/usr/bin/env python3
"""make-hostile-images.py OUTDIR GOOD_IMAGE SECKEY

Writes a corpus of hostile images for tests/e2e/verify-hostile.sh. Each
CASE.tar comes with CASE.tar.sha256 (recomputed: an attacker can) and, unless
the case is about signatures, CASE.tar.sig made with SECKEY (as if the signer
were fooled), so that verify must catch the problem itself. CASE.expect holds
the regular expression verify's message must match.
GOOD_IMAGE is a valid image from imgbuild pack (for the appended-member and
truncation cases). Uses only the Python standard library and signify-openbsd.
"""
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile

out, good, seckey = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)
EPOCH = 1577836800


def info(name, kind=tarfile.REGTYPE, size=0, mode=0o644, link="", uid=0, gid=0):
    t = tarfile.TarInfo(name)
    t.type = kind
    t.size = size
    t.mode = mode
    t.linkname = link
    t.uid, t.gid = uid, gid
    t.mtime = EPOCH
    t.uname = t.gname = ""
    return t


def esc(s):
    return "".join("\\%03o" % b if b <= 0x20 or b == 0x7F or b == 0x5C else chr(b) for b in s.encode())


def listing_line(t, data):
    norm = t.name.rstrip("/") if t.name not in ("./", ".") else "."
    typ = {tarfile.REGTYPE: "f", tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l", tarfile.LNKTYPE: "h"}.get(t.type)
    if typ is None:
        return None
    sha = hashlib.sha256(data).hexdigest() if typ == "f" else "-"
    target = esc(t.linkname) if typ in "lh" else "-"
    if typ == "h" and t.linkname.startswith("./"):
        target = esc(t.linkname.rstrip("/"))
    return "%s %04o %d %d %d %s %s %s" % (typ, t.mode & 0o7777, t.uid, t.gid, len(data) if typ == "f" else 0, sha, esc(norm), target)


def make(name, members, expect, listing_from=None, lie=None, sort=True, sign=True, listing=True, listing_last=True,
         facts_extra=b""):
    """members: list of (TarInfo, bytes). The listing is made from
    LISTING_FROM (default: the members, minus unsafe ones it cannot express),
    then LIE(lines) may edit it."""
    base = [(info("./", tarfile.DIRTYPE, mode=0o755), b""), (info("./.imgbuild/", tarfile.DIRTYPE, mode=0o755), b"")]
    facts = b'name = "%s"\nbuilder = "hostile"\ncreated = %d\n' % (name.encode(), EPOCH) + facts_extra
    base.append((info("./.imgbuild/facts.toml", size=len(facts)), facts))
    all_members = base + members
    src = listing_from if listing_from is not None else all_members
    lines = []
    for t, d in src:
        line = listing_line(t, d)
        if line is not None:
            lines.append((t.name.rstrip("/") or ".", line))
    lines.sort(key=lambda x: x[0].encode())
    text = [l for _, l in lines]
    if lie:
        text = lie(text)
    body = ("imgbuild-listing 1\n" + "".join(l + "\n" for l in text)).encode()
    entry = (info("./.imgbuild/listing", size=len(body)), body)
    if listing and not listing_last:
        all_members.append(entry)
    if sort:
        all_members.sort(key=lambda m: (m[0].name.rstrip("/") if m[0].name != "./" else ".").encode())
    if listing and listing_last:
        all_members.append(entry)  # the listing ends an image, as pack writes it
    path = os.path.join(out, name + ".tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for t, d in all_members:
            t.size = len(d) if t.type == tarfile.REGTYPE else 0
            tf.addfile(t, io.BytesIO(d) if t.type == tarfile.REGTYPE else None)
    finish(name, expect, sign)


def finish(name, expect, sign=True, sig_from=None):
    path = os.path.join(out, name + ".tar")
    hexd = hashlib.sha256(open(path, "rb").read()).hexdigest()
    with open(path + ".sha256", "w") as f:
        f.write("%s  %s.tar\n" % (hexd, name))
    sig = path + ".sig"
    if os.path.exists(sig):
        os.unlink(sig)
    if sig_from:
        shutil.copy(sig_from, sig)
    elif sign:
        msg = os.path.join(out, name + ".msg")
        with open(msg, "w") as f:
            f.write("SHA256 (%s.tar) = %s\n" % (name, hexd))
        subprocess.run(["signify-openbsd", "-S", "-e", "-s", seckey, "-m", msg, "-x", sig], check=True)
        os.unlink(msg)
    with open(os.path.join(out, name + ".expect"), "w") as f:
        f.write(expect + "\n")


f = lambda n, d=b"x\n", **k: (info(n, size=len(d), **k), d)
d = lambda n, **k: (info(n, tarfile.DIRTYPE, mode=0o755, **k), b"")

make("absolute-path", [f("/etc/evil")], "absolute path")
make("dotdot", [f("./../evil")], r"'\.\.' in path")
make("dotdot-deep", [d("./a/"), f("./a/../../evil")], r"'\.\.' in path")
make("symlink-then-file", [(info("./lnk", tarfile.SYMTYPE, mode=0o777, link="/tmp"), b""), f("./lnk/evil")],
     "below a symlink")
make("hardlink-outside", [(info("./h", tarfile.LNKTYPE, link="/etc/shadow"), b"")], "hard link to")
make("hardlink-dotdot", [(info("./h", tarfile.LNKTYPE, link="../../etc/passwd"), b"")], "hard link to")
make("hardlink-to-later", [(info("./a", tarfile.LNKTYPE, link="./b"), b""), f("./b")], "hard link to")
dev = info("./sda", tarfile.BLKTYPE, mode=0o660)
dev.devmajor, dev.devminor = 8, 0
make("block-device", [(dev, b"")], "block device")
null = info("./null", tarfile.CHRTYPE, mode=0o666)
null.devmajor, null.devminor = 1, 3
make("char-device", [(null, b"")], "character device")
make("fifo", [(info("./fifo", tarfile.FIFOTYPE), b"")], "fifo")
make("duplicate", [f("./a", b"one\n"), f("./a", b"two\n")], "duplicate entry", listing_from=[f("./a", b"one\n")])
make("out-of-order", [f("./b"), f("./a")], "out of order", sort=False)
make("no-parent-folder", [f("./missing/evil")], "not an earlier folder entry")
make("listing-lies-content", [f("./bin", b"real\n")], "content differs from the listing",
     lie=lambda ls: [l.replace(hashlib.sha256(b"real\n").hexdigest(), hashlib.sha256(b"fake\n").hexdigest()) for l in ls])
make("listing-lies-mode", [f("./suid", mode=0o4755)], "mode 4755, listed 0755",
     lie=lambda ls: [l.replace("f 4755", "f 0755") for l in ls])
make("listing-lies-owner", [f("./o", uid=1000)], "owner 1000:0, listed 0:0",
     lie=lambda ls: [l.replace("f 0644 1000", "f 0644 0") for l in ls])
make("listing-omits", [f("./extra")], "not in the listing", lie=lambda ls: [l for l in ls if "./extra" not in l])
make("listing-invents", [f("./real")], "missing from the image", lie=lambda ls: sorted(ls + ["f 0644 0 0 2 %s ./zzz -" % hashlib.sha256(b"x\n").hexdigest()], key=lambda l: l.split(" ")[6]))
make("listing-symlink-target", [(info("./l", tarfile.SYMTYPE, mode=0o777, link="/etc/passwd"), b"")],
     "link target differs", lie=lambda ls: [l.replace("/etc/passwd", "/bin/true") for l in ls])
make("no-listing", [f("./a")], "no ./.imgbuild/listing", listing=False)
make("listing-not-last", [f("./a")], "after ./.imgbuild/listing, which must be the last entry", listing_last=False)

# Terminal control characters in an entry name and in the facts: verify must
# print them escaped, so no fake "verdict: OK" line (or cursor move) is drawn.
FAKE = "\x1b[1A\x1b[2K\rverdict:   OK\nverdict:   OK\x1b[8m"
make("terminal-escapes", [f("./x" + FAKE)], r"\\x1b\[1A\\x1b\[2K\\x0dverdict:   OK\\x0averdict:   OK",
     lie=lambda ls: [l for l in ls if "./x" not in l],
     facts_extra=b'cuda = "10.0\\u001b[2K\\rverdict:   OK\\n"\n')

# Truncated: a valid image cut inside its data.
data = open(good, "rb").read()
with open(os.path.join(out, "truncated.tar"), "wb") as fh:
    fh.write(data[: len(data) // 2 + 100])
finish("truncated", "truncated or corrupt")

# Appended: a member added after the valid image's last entry (the
# end-of-archive blocks removed and written again), .sha256 recomputed; the
# attacker cannot sign, so the original signature stays.
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
    t = info("./zzz-backdoor", size=6)
    tf.addfile(t, io.BytesIO(b"evil!\n"))
extra = buf.getvalue()
end = len(data)
while end >= 512 and data[end - 512:end] == b"\0" * 512:
    end -= 512
with open(os.path.join(out, "appended.tar"), "wb") as fh:
    fh.write(data[:end] + extra)
finish("appended", "signature", sig_from=good + ".sig")
shutil.copy(os.path.join(out, "appended.expect"), os.path.join(out, "appended.expect2"))
with open(os.path.join(out, "appended.expect2"), "w") as fh:
    fh.write("after ./.imgbuild/listing, which must be the last entry\n")

# Signed by a key nobody trusts.
shutil.copy(good, os.path.join(out, "untrusted-signer.tar"))
k = os.path.join(out, "stranger")
for ext in (".pub", ".sec"):
    if os.path.exists(k + ext):
        os.unlink(k + ext)
subprocess.run(["signify-openbsd", "-G", "-n", "-p", k + ".pub", "-s", k + ".sec"], check=True)
finish("untrusted-signer", "untrusted key", sign=False)
seckey_saved = seckey
seckey = k + ".sec"
finish("untrusted-signer", "untrusted key")
seckey = seckey_saved

# Unsigned.
shutil.copy(good, os.path.join(out, "unsigned.tar"))
finish("unsigned", "not signed", sign=False)

# Not a tar at all.
with open(os.path.join(out, "not-a-tar.tar"), "wb") as fh:
    fh.write(b"PK\x03\x04" + os.urandom(2000))
finish("not-a-tar", "not a readable image|truncated or corrupt")
