"""The runner under yappi's CPU clock, for ``make profile`` (``benchmarks.profile_drain``).

    python -m benchmarks.cpu_profiled STATS run --config FILE ...

Runs the command line after STATS (``dynamodb-replicator``'s own ``main``) with yappi timing
every thread by its own CPU clock (CLOCK_THREAD_CPUTIME_ID), so a thread waiting on a socket
or a lock costs nothing in the profile: what shows is what burns the process's CPU. SIGUSR1
drops what was gathered so far (startup and preflight); at exit the functions' statistics
are saved to STATS (pstats format). Production code is unchanged.
"""

from __future__ import annotations

import signal
import sys

import yappi

from dynamodb_replicator.cli.main import main as cli_main


def main() -> None:
    stats, argv = sys.argv[1], sys.argv[2:]
    yappi.set_clock_type("cpu")
    signal.signal(signal.SIGUSR1, lambda *_: yappi.clear_stats())
    yappi.start(builtins=True, profile_threads=True)
    try:
        code = cli_main(argv)
    finally:
        yappi.stop()
        yappi.get_func_stats().save(stats, type="pstat")
    sys.exit(code)


if __name__ == "__main__":
    main()
