"""The command line of every program here: one-line argument errors, and one `main()` skeleton with fixed exit codes.

Standard library only: the host programs and the pod's programs (copied into the AIM image) import it.

Exit codes of a program run through `run_program`: 0 done, 1 failed (an AimError, or anything unexpected), 2 bad
arguments, 130 interrupted. Every message is one line, prefixed with the program's name, with secrets replaced.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from aim_infra.common.errors import AimError

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED_EXIT = 130
#: The most of an unexpected error's message shown: its type and first words say what broke.
UNEXPECTED_DETAIL_LIMIT = 300


class UsageError(AimError):
    """Bad command-line arguments; the message is the line to print, `prog` the program (or subcommand) that said so."""

    def __init__(self, message: str, prog: str = "") -> None:
        super().__init__(message)
        self.prog = prog


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing its usage block and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, prog=self.prog)


def one_line(message: str, *secrets: str) -> str:
    """`message` on one line with every secret replaced by ***."""
    line = " ".join(message.split())
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line


def run_program(
    prefix: str,
    body: Callable[[], str | None],
    *,
    usage_hint: str = "",
    secrets: Sequence[str] = (),
    interrupted: str = "interrupted",
    unexpected: str = "unexpected error: {error}",
    failure_exit: int = 1,
    report: Callable[[str], None] | None = None,
) -> int:
    """Run `body` (parse the arguments, do the work) and turn how it ended into one line and an exit code.

    - returns a line: printed on stdout, exit 0 (None: the body printed its own output);
    - `--help` (SystemExit from argparse): its code;
    - UsageError: `PREFIX message (usage_hint)` on stderr, exit 2;
    - any other AimError: `PREFIX message` on stderr, exit `failure_exit` (1);
    - Ctrl-C: `PREFIX interrupted` on stderr, exit 130;
    - anything else: `PREFIX unexpected error: Type: message` on stderr, exit `failure_exit` (never a traceback).

    `secrets` is read when a line is printed, so the body may append the keys it reads to the list it was given.
    `unexpected` words the last case (`{error}` is the type and message). `report` takes the lines of a failed or
    interrupted run instead of stderr, for a program whose output is a list of actions (it reports them as one more).
    """

    def shown(text: str) -> str:
        return one_line(text, *secrets)

    def problem(text: str) -> None:
        if report is not None:
            report(text)
        else:
            print(f"{prefix} {text}", file=sys.stderr)

    try:
        line = body()
    except SystemExit as exit_:  # --help printed its text
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    except UsageError as error:
        hint = f" ({usage_hint})" if usage_hint else ""
        print(f"{prefix} {shown(str(error))}{hint}", file=sys.stderr)
        return 2
    except AimError as error:
        problem(shown(str(error)))
        return failure_exit
    except KeyboardInterrupt:
        problem(interrupted)
        return INTERRUPTED_EXIT
    except BaseException as error:  # never a traceback: the line still names what broke
        # Secrets go before the cut, so a cut never leaves part of one behind.
        detail = shown(f"{type(error).__name__}: {error}")[:UNEXPECTED_DETAIL_LIMIT]
        problem(unexpected.format(error=detail))
        return failure_exit
    if line is not None:
        print(shown(line), flush=True)
    return 0
