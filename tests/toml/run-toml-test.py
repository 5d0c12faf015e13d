#!/usr/bin/env python3
"""Runs the TOML 1.0 cases of toml-test against a decoder and prints TAP.

Usage: run-toml-test.py DECODER

The cases are tests/toml/toml-test, a copy of the project's shared
toml-test folder kept in the repository so that a clean clone anywhere runs
them ($IMGBUILD_SHARED/toml-test instead when that is set). Valid cases must decode to the expected
tagged JSON, compared as values: floats numerically (inf/nan in any
spelling), date-times after normalising 'T'/'t'/' ', 'z'/'Z' and trailing
zeros of the seconds fraction. Invalid cases must exit non-zero. A few extra
cases check that errors name <stdin>:LINE:COL.
"""
import json
import math
import os
import re
import subprocess
import sys

TIMEOUT = 10

# (name, input, expected message prefix) for the error-position checks.
ERROR_POSITIONS = [
    ("missing-value", "a = 1\nb = \n", "<stdin>:2:5: expected value, found newline"),
    ("redefined-table", "[a]\nx = 1\n[a]\n", "<stdin>:3:2: table [a] already defined at 1:2"),
    ("duplicate-key", "x = 1\n\n  x = 2\n", "<stdin>:3:3: duplicate key 'x', first defined at 1:1"),
    ("unterminated-string", 's = "abc\n', "<stdin>:1:9: expected '\"' to close the string opened at 1:5"),
    ("bad-month", "d = 1979-13-01\n", "<stdin>:1:10: expected month 01-12, found 13"),
    ("feb-30", "\n\nd = 2023-02-30\n", "<stdin>:3:13: expected day 01-28"),
    ("bad-escape-in-multiline", 'x = """\nok\n  \\q"""\n', "<stdin>:3:3: expected escape sequence"),
    ("extend-inline", "a = {b = 1}\n[a.c]\n", "<stdin>:2:2: cannot extend inline table 'a'"),
    ("int-overflow", "n = 9223372036854775808\n", "<stdin>:1:5: expected a number"),
    ("col-counts-characters", 'k = "é" x\n', "<stdin>:1:9: expected newline"),
    ("control-in-comment", "# a\x01b\n", "<stdin>:1:4: expected comment text"),
    ("bad-utf8", b"a = 1\nb = \"\xff\"\n", "<stdin>:2:6: expected UTF-8 text"),
]


def find_suite():
    env = os.environ.get("IMGBUILD_SHARED")
    if env:
        return os.path.join(env, "toml-test")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "toml-test")


def run(decoder, data):
    try:
        p = subprocess.run([decoder], input=data, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, b"", b"timed out"
    return p.returncode, p.stdout, p.stderr


def as_float(s):
    s = s.strip().lower()
    if s.lstrip("+-") == "nan":
        return math.nan
    return float(s)


_FRACTION = re.compile(r"\.(\d*?)0*(?=$|[Z+-])")


def norm_datetime(s):
    s = s.upper().replace(" ", "T")
    # 12:00:00.600 and 12:00:00.6 name the same instant.
    s = _FRACTION.sub(lambda m: "." + m.group(1) if m.group(1) else "", s)
    return s


def compare(got, want, path="$"):
    """None when equal, else a description of the first difference."""
    if isinstance(want, dict) and set(want.keys()) == {"type", "value"} and isinstance(want.get("value"), str):
        if not (isinstance(got, dict) and set(got.keys()) == {"type", "value"}):
            return f"{path}: expected {want['type']} scalar, got {json.dumps(got)[:80]}"
        t = want["type"]
        if got["type"] != t:
            return f"{path}: expected type {t}, got {got['type']}"
        g, w = got["value"], want["value"]
        if t == "float":
            gf, wf = as_float(g), as_float(w)
            if math.isnan(wf):
                ok = math.isnan(gf)
            else:
                ok = gf == wf and math.copysign(1, gf) == math.copysign(1, wf)
            return None if ok else f"{path}: expected float {w}, got {g}"
        if t == "integer":
            return None if int(g) == int(w) else f"{path}: expected integer {w}, got {g}"
        if t in ("datetime", "datetime-local", "date-local", "time-local"):
            return None if norm_datetime(g) == norm_datetime(w) else f"{path}: expected {t} {w}, got {g}"
        return None if g == w else f"{path}: expected {t} {w!r}, got {g!r}"
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path}: expected table, got {type(got).__name__}"
        if set(got) != set(want):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            return f"{path}: keys differ (missing {missing}, extra {extra})"
        for k in want:
            d = compare(got[k], want[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{path}: expected array, got {type(got).__name__}"
        if len(got) != len(want):
            return f"{path}: expected {len(want)} items, got {len(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            d = compare(g, w, f"{path}[{i}]")
            if d:
                return d
        return None
    return f"{path}: unexpected expected-value {want!r}"


def one_line(b):
    s = b.decode("utf-8", "replace").strip().replace("\n", " | ")
    return s[:200]


def check_valid(decoder, base, name):
    with open(os.path.join(base, name + ".toml"), "rb") as f:
        data = f.read()
    with open(os.path.join(base, name + ".json"), "rb") as f:
        want = json.loads(f.read().decode("utf-8"))
    rc, out, errout = run(decoder, data)
    if rc != 0:
        return f"exit {rc}: {one_line(errout)}"
    try:
        got = json.loads(out.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return f"bad JSON from decoder: {e}"
    return compare(got, want)


def check_invalid(decoder, base, name):
    with open(os.path.join(base, name + ".toml"), "rb") as f:
        data = f.read()
    rc, out, errout = run(decoder, data)
    if rc is None:
        return "timed out"
    if rc == 0:
        return "accepted invalid input"
    if rc < 0:
        return f"killed by signal {-rc}"
    if not errout.strip():
        return "no error message"
    if b"\n" in errout.strip():
        return f"error message spans lines: {one_line(errout)}"
    return None


def check_position(decoder, data, want):
    rc, out, errout = run(decoder, data.encode("utf-8") if isinstance(data, str) else data)
    if rc == 0 or rc is None:
        return f"exit {rc}, expected failure"
    msg = errout.decode("utf-8", "replace").strip()
    if not msg.startswith(want):
        return f"message {msg!r} does not start with {want!r}"
    return None


def main():
    if len(sys.argv) != 2:
        print("usage: run-toml-test.py DECODER", file=sys.stderr)
        return 2
    decoder = os.path.abspath(sys.argv[1])
    suite = find_suite()
    listing = os.path.join(suite, "files-toml-1.0.0")
    if not os.path.isfile(listing):
        print(f"1..0 # SKIP toml-test cases not found at {suite}")
        return 0
    with open(listing) as f:
        names = [line.strip() for line in f if line.strip().endswith(".toml")]
    cases = [(n[: -len(".toml")]) for n in names]
    total = len(cases) + len(ERROR_POSITIONS)
    print(f"1..{total}")
    failed = 0
    counts = {"valid": [0, 0], "invalid": [0, 0], "errpos": [0, 0]}
    n = 0
    for case in cases:
        n += 1
        kind = case.split("/", 1)[0]
        if kind == "valid":
            why = check_valid(decoder, suite, case)
        elif kind == "invalid":
            why = check_invalid(decoder, suite, case)
        else:
            why = f"unknown case kind {kind!r}"
            kind = "invalid"
        counts[kind][1] += 1
        if why is None:
            counts[kind][0] += 1
            print(f"ok {n} - {case}")
        else:
            failed += 1
            print(f"not ok {n} - {case}: {why}")
    for name, data, want in ERROR_POSITIONS:
        n += 1
        why = check_position(decoder, data, want)
        counts["errpos"][1] += 1
        if why is None:
            counts["errpos"][0] += 1
            print(f"ok {n} - errpos/{name}")
        else:
            failed += 1
            print(f"not ok {n} - errpos/{name}: {why}")
    for kind, (good, all_) in counts.items():
        print(f"# {kind}: {good}/{all_} passed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
