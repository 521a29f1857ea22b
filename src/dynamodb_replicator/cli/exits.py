"""Every command's exit codes, declared once: ``--help`` shows them (``main`` adds them to
each command's epilog) and the docs' command reference is rendered from them.

The convention (``main``): 0 all is well; 1 the command found what it looks for (regions
differ, a pair is stuck, keys left undecided); 2 it could not do its work (a bad argument
or configuration, a region that refused or could not be reached); 3 ``status`` only: no
runner has run in some region yet; 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Mapping

from dynamodb_replicator.cli.options import EXIT_USAGE

__all__ = ["COMMON", "EXIT_CLOSED_PIPE", "EXIT_CODES", "EXIT_INTERRUPTED", "epilog", "exit_codes"]

EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) during a command that is not the runner: the shell's 128 + 2."""

EXIT_CLOSED_PIPE = 141
"""Standard output closed by its reader (``| head``): the shell's 128 + SIGPIPE, quietly."""

COMMON: Mapping[int, str] = {
    EXIT_USAGE: "it could not do its work: a bad argument or configuration, a region that "
    "refused or could not be reached (one `error:` line per problem on stderr)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_CLOSED_PIPE: "standard output was closed by its reader (`| head`); nothing on stderr",
}
"""What every command may return besides its own codes."""

EXIT_CODES: Mapping[str, Mapping[int, str]] = {
    "demo": {0: "the three regions converged", 1: "they did not converge in time"},
    "run": {0: "stopped by SIGINT or SIGTERM, checkpoints saved"},
    "status": {
        0: "nothing stuck and no parked record waiting",
        1: "a pair is stuck or a parked record waits (the reasons are printed)",
        3: "nothing is stuck or parked, but no runner has run in some region yet: its "
        "pairs show `NOT STARTED` (no state table there, or no runner's report, lease or "
        "worker in it)",
    },
    "diff": {
        0: "nothing diverged (identical, or every difference was in flight)",
        1: "keys diverged (in content, or the same content under another version) or "
        "stayed unsettled, or an item sits outside its residency scope",
    },
    "repair": {
        0: "every difference was repaired (or, with `--dry-run`, planned)",
        1: "keys remain undecided: without a usable `__timestamp`, or (`--regions` with a "
        "residency rule) remembered deleted by a region not repaired that may have been "
        "a stand-in",
    },
    "add-region": {
        0: "the region was copied and verified: nothing diverged",
        1: "keys diverged, the settle wait ran out, or the joining table holds items "
        "without a usable `__timestamp` (not copied out)",
    },
    "package": {0: "the zip was written"},
    "template": {0: "the template was written"},
    "subscribe": {0: "every table was subscribed (or, with `--dry-run`, planned)"},
    "create-tombstone-tables": {0: "every tombstone table exists"},
    "redrive": {
        0: "every parked record and stored batch reached every target and was removed",
        1: "some records still fail (they are printed and kept)",
    },
    "version-items": {0: "every item has a `__timestamp`"},
}
"""Each command's own exit codes and what they mean."""


def exit_codes(command: str) -> dict[int, str]:
    """Every exit code of ``command``, its own and the common ones, in order."""
    return dict(sorted({**COMMON, **EXIT_CODES.get(command, {})}.items()))


def epilog(command: str) -> str:
    """The ``exit status:`` block of ``command``'s ``--help``."""
    lines = [
        f"  {code:<3} {meaning.replace('`', '')}" for code, meaning in exit_codes(command).items()
    ]
    return "exit status:\n" + "\n".join(lines)
