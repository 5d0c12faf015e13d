#!/usr/bin/env python3
"""Runs a command as a child subreaper and reports what outlives it.

    reaper.py DIR [--grace SECONDS] -- COMMAND...

Writes into DIR:
  pid        the command's pid, as soon as it runs (it leads its own process
             group, like a shell job, so `kill -INT -- -PID` is a Ctrl-C)
  status     its exit status once it ends: the code, or 128+N when killed by N
  survivors  one line "PID COMMAND LINE" per process of its tree still alive
             GRACE seconds after it ended (empty when none)

Orphans of the command's tree are reparented to this process
(PR_SET_CHILD_SUBREAPER), so nothing it started can slip away to PID 1
unseen. Survivors are SIGKILLed after they are written down, so that one
failed case does not disturb the next. Exits with the command's status.
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children_of(pid):
    """Pids whose parent is PID (from /proc/*/stat)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: fields start after the last ')'.
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == pid and rest[0] != b"Z":
            out.append(int(name))
    return out


def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        for c in children_of(p):
            if c not in seen:
                seen.append(c)
                todo.append(c)
    return seen


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip() or "?"
    except OSError:
        return "?"


def reap_all():
    while True:
        try:
            p, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if p == 0:
            return


def main():
    args = sys.argv[1:]
    out = args.pop(0)
    grace = 5.0
    if args and args[0] == "--grace":
        args.pop(0)
        grace = float(args.pop(0))
    if not args or args[0] != "--":
        sys.exit("usage: reaper.py DIR [--grace S] -- COMMAND...")
    argv = args[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("reaper.py: PR_SET_CHILD_SUBREAPER failed")
    # Signals meant for the command's group must not stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            print(f"reaper.py: {argv[0]}: {e}", file=sys.stderr)
            os._exit(127)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    with open(os.path.join(out, "pid.tmp"), "w") as f:
        f.write(f"{pid}\n")
    os.rename(os.path.join(out, "pid.tmp"), os.path.join(out, "pid"))
    while True:
        try:
            p, ws = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        if p == pid:
            break
    status = os.waitstatus_to_exitcode(ws)
    if status < 0:
        status = 128 - status
    # Whatever is left of the tree now hangs below us.
    deadline = time.monotonic() + grace
    left = tree(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        reap_all()
        left = tree(os.getpid())
    with open(os.path.join(out, "survivors"), "w") as f:
        for p in left:
            f.write(f"{p} {cmdline(p)}\n")
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _ in range(100):
        reap_all()
        if not tree(os.getpid()):
            break
        time.sleep(0.05)
    with open(os.path.join(out, "status.tmp"), "w") as f:
        f.write(f"{status}\n")
    os.rename(os.path.join(out, "status.tmp"), os.path.join(out, "status"))
    sys.exit(status)


if __name__ == "__main__":
    main()
