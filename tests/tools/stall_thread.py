#!/usr/bin/env python3
"""stall_thread.py PID NAME SECONDS: stop one thread of a process (the first whose name is
NAME) for SECONDS with ptrace, the rest of the process running on, then let it go.

ptrace acts on one thread: PTRACE_SEIZE + PTRACE_INTERRUPT puts only that thread in a
ptrace-stop, which is what a worker stuck in a loop looks like from the outside (its loop
passes stop) without a test hook in ternd. Prints the thread id it stalled. Needs root (or
CAP_SYS_PTRACE)."""
import ctypes
import os
import sys
import time

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000


def main():
    pid, name, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    tid = None
    for t in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        with open(f"/proc/{pid}/task/{t}/comm") as f:
            if f.read().strip() == name:
                tid = int(t)
                break
    if tid is None:
        sys.exit(f"stall_thread: no thread named {name} in process {pid}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    for req in (PTRACE_SEIZE, PTRACE_INTERRUPT):
        if libc.ptrace(req, tid, None, None) != 0:
            e = ctypes.get_errno()
            sys.exit(f"stall_thread: ptrace({req:#x}, {tid}): {os.strerror(e)}")
    os.waitpid(tid, WALL)  # the thread is in its ptrace-stop now
    print(f"stalled tid={tid}", flush=True)
    time.sleep(secs)
    if libc.ptrace(PTRACE_DETACH, tid, None, None) != 0:
        sys.exit(f"stall_thread: detach: {os.strerror(ctypes.get_errno())}")
    print("released", flush=True)


if __name__ == "__main__":
    main()
