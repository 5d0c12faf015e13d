#!/usr/bin/env python3
"""bench/make-tree.py DIR MB [SEED]: a synthetic root of about MB megabytes
(10^6 bytes) for the pack and verify benchmarks. 40% of the bytes in 4-64 KiB
files (like /usr/lib, /usr/share), 250 to a folder; 60% in 50-200 MB files
(like libcudnn, libtorch). Content is slices of one random 4 MiB block (each
big file's 4 MiB pieces start with fresh random bytes), so generating a few GB
takes seconds; the same SEED gives the same sizes and names."""
import os
import random
import sys


def main():
    root, mb = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    total = mb * 1000 * 1000
    small = total * 4 // 10
    big = total - small
    blob = os.urandom(4 << 20)
    n = d = 0
    while small > 0:
        if n % 250 == 0:
            d += 1
            os.makedirs(f"{root}/usr/lib/d{d}", exist_ok=True)
        size = min(small, rnd.randint(4096, 65536))
        off = rnd.randint(0, len(blob) - size)
        with open(f"{root}/usr/lib/d{d}/f{n}.so", "wb") as f:
            f.write(blob[off:off + size])
        small -= size
        n += 1
    os.makedirs(f"{root}/opt/big", exist_ok=True)
    i = 0
    while big > 0:
        size = min(big, rnd.randint(50, 200) * 1000 * 1000)
        with open(f"{root}/opt/big/lib{i}.so", "wb") as f:
            left = size
            while left > 0:
                k = min(left, len(blob))
                f.write(os.urandom(64) + blob[64:k])
                left -= k
        big -= size
        i += 1


if __name__ == "__main__":
    main()
