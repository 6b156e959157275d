"""Runs one command and records its own wall time, CPU time and peak RSS, for run_benchmark.py.

Why a separate tiny process: on exec, Linux folds the spawning process's peak RSS into the child's
ru_maxrss, so a child spawned straight from the benchmark (which has held large buffers) would report
the benchmark's peak instead of its own. Run with `python -I -S`, this launcher stays at a few MB.
Usage: python -I -S measure_child.py TIMEOUT_S USAGE_PATH COMMAND...
Writes "wall_s cpu_s peak_rss_kb exit_code timed_out" to USAGE_PATH.
"""

import os
import signal
import sys
import time


def main() -> None:
    timeout_s, usage_path, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    timed_out = False
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ)

    def kill_on_timeout(signum, frame):
        nonlocal timed_out
        timed_out = True
        os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, kill_on_timeout)
    signal.alarm(timeout_s)
    _, status, usage = os.wait4(pid, 0)  # this child's own rusage, not a sum over all children
    signal.alarm(0)
    wall_s = time.perf_counter() - started
    cpu_s = usage.ru_utime + usage.ru_stime
    with open(usage_path, "w") as out:
        out.write(f"{wall_s} {cpu_s} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {int(timed_out)}\n")


if __name__ == "__main__":
    main()
