#!/usr/bin/env python3
"""crafted-names.py ROOT COUNT BITS

Makes ROOT/c/ with COUNT empty files whose names ("./c/nNNN", as verify's name
set stores them) have a 64-bit FNV-1a hash with its low BITS bits zero. FNV-1a
is the unkeyed hash that set used before its SipHash key (issue #14, item 10):
with it, these names share a handful of probe chains and the set turns
quadratic while an image is read, before its signature is checked. Prints how
many probes past the first slot that unkeyed table paid for them, so a test
can show the names really are an attack.
"""
import os
import sys

root, count, bits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
P, M, mask = 0x100000001b3, (1 << 64) - 1, (1 << bits) - 1
def fnv(b, h=0xcbf29ce484222325):
    for c in b:
        h = ((h ^ c) * P) & M
    return h
prefix = fnv(b"./c/n")
names, i = [], 0
while len(names) < count:
    s = str(i).encode()
    if fnv(s, prefix) & mask == 0:
        names.append("n" + s.decode())
    i += 1
os.makedirs(root + "/c")
for n in names:
    open(root + "/c/" + n, "w").close()
# What the old table (linear probing, 1024 slots doubled at half full) paid.
cap, slots, probes = 1024, {}, 0
for n in ["./c/" + n for n in names]:
    if (len(slots) + 1) * 2 > cap:
        cap *= 2
        old, slots = slots, {}
        for k in old.values():
            j = fnv(k.encode()) & (cap - 1)
            while j in slots:
                j, probes = (j + 1) & (cap - 1), probes + 1
            slots[j] = k
    j = fnv(n.encode()) & (cap - 1)
    while j in slots:
        j, probes = (j + 1) & (cap - 1), probes + 1
    slots[j] = n
print(probes)
