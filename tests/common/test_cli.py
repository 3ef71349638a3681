"""The one main() skeleton: how a program's ending becomes one line and an exit code, secrets never shown."""

from __future__ import annotations

import pytest

from aim_infra.common.cli import (
    INTERRUPTED_EXIT,
    UNEXPECTED_DETAIL_LIMIT,
    OneLineParser,
    UsageError,
    one_line,
    run_program,
)
from aim_infra.common.errors import AimError
from aim_infra.host.engine_access import AccessFailure, TransportError
from aim_infra.host.guidellm_run import GeneratorError
from aim_infra.host.image_cleanup import DockerUnavailable, Unreachable
from aim_infra.host.ownership import ApiError
from aim_infra.pod.download import CorruptFile, DownloadError, IncompleteDownload

PREFIX = "aim test:"
KEY = "s3cr3t-key"


def ran(capsys: pytest.CaptureFixture[str], body: object, **options: object) -> tuple[int, str, str]:
    code = run_program(PREFIX, body, **options)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return code, out, err


def raising(error: BaseException) -> object:
    def body() -> str:
        raise error

    return body


def test_success_prints_the_line_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    assert ran(capsys, lambda: f"ok  with\n{KEY}", secrets=[KEY]) == (0, "ok with ***\n", "")
    assert ran(capsys, lambda: None) == (0, "", "")


def test_help_and_other_exits_keep_their_code(capsys: pytest.CaptureFixture[str]) -> None:
    parser = OneLineParser(prog="prog")
    code, out, err = ran(capsys, lambda: parser.parse_args(["--help"]))
    assert (code, err) == (0, "") and out.startswith("usage: prog")
    assert ran(capsys, raising(SystemExit(3)))[0] == 3
    assert ran(capsys, raising(SystemExit(None)))[0] == 0


def test_a_usage_error_is_exit_2_with_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    parser = OneLineParser(prog="prog")
    parser.add_argument("--n", type=int, required=True)
    code, out, err = ran(capsys, lambda: parser.parse_args(["--n", "x"]), usage_hint="see prog --help")
    assert (code, out) == (2, "")
    assert err == f"{PREFIX} argument --n: invalid int value: 'x' (see prog --help)\n"
    assert ran(capsys, raising(UsageError(f"--key {KEY} is not allowed")), secrets=[KEY])[2] == (
        f"{PREFIX} --key *** is not allowed\n"
    )


def test_a_failure_is_exit_1_with_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert ran(capsys, raising(AccessFailure("not healthy"))) == (1, "", f"{PREFIX} not healthy\n")
    assert ran(capsys, raising(AimError("gone")), failure_exit=0) == (0, "", f"{PREFIX} gone\n")


def test_secrets_read_by_the_body_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    secrets: list[str] = []

    def body() -> str:
        secrets.append(KEY)  # e.g. the API key read from its Secret
        raise AccessFailure(f"401 with key {KEY}")

    assert ran(capsys, body, secrets=secrets)[2] == f"{PREFIX} 401 with key ***\n"


def test_an_interrupt_is_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert ran(capsys, raising(KeyboardInterrupt())) == (INTERRUPTED_EXIT, "", f"{PREFIX} interrupted\n")
    code, _, err = ran(capsys, raising(KeyboardInterrupt()), interrupted="interrupted; files kept")
    assert (code, err) == (130, f"{PREFIX} interrupted; files kept\n")


def test_an_unexpected_error_is_one_line_never_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ran(capsys, raising(RuntimeError(f"boom\n  second {KEY}")), secrets=[KEY])
    assert (code, out, err) == (1, "", f"{PREFIX} unexpected error: RuntimeError: boom second ***\n")
    code, _, err = ran(capsys, raising(ValueError("x")), unexpected="internal error {error}")
    assert (code, err) == (1, f"{PREFIX} internal error ValueError: x\n")


def test_a_long_unexpected_message_is_cut_after_the_secrets_are_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "k" * 40
    # The secret straddles the cut: cut first, and its first ten characters would be left in the line.
    text = "x" * (UNEXPECTED_DETAIL_LIMIT - len("RuntimeError: ") - 10) + secret + "y" * 100
    _, _, err = ran(capsys, raising(RuntimeError(text)), secrets=[secret])
    line = err.removesuffix("\n")
    assert "k" not in line and "x***y" in line
    assert len(line) == len(f"{PREFIX} unexpected error: ") + UNEXPECTED_DETAIL_LIMIT


def test_report_takes_the_lines_of_a_program_that_lists_its_actions(capsys: pytest.CaptureFixture[str]) -> None:
    said: list[str] = []
    options = {"report": said.append, "unexpected": "unexpected error ({error}); stopped", "failure_exit": 0}
    assert ran(capsys, raising(RuntimeError("boom")), **options) == (0, "", "")
    assert ran(capsys, raising(Unreachable("connection refused")), **options) == (0, "", "")
    assert ran(capsys, raising(KeyboardInterrupt()), **options) == (130, "", "")
    assert ran(capsys, raising(UsageError("bad")), **options) == (2, "", f"{PREFIX} bad\n")  # still stderr, still 2
    assert said == ["unexpected error (RuntimeError: boom); stopped", "connection refused", "interrupted"]


def test_the_parser_names_the_subcommand_that_refused() -> None:
    parser = OneLineParser(prog="tool")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    commands.add_parser("run").add_argument("--n", type=int, required=True)
    with pytest.raises(UsageError) as error:
        parser.parse_args(["run"])
    assert (error.value.prog, str(error.value)) == ("tool run", "the following arguments are required: --n")
    with pytest.raises(UsageError) as error:
        parser.parse_args(["walk"])
    assert error.value.prog == "tool" and "invalid choice: 'walk'" in str(error.value)


def test_one_line_replaces_every_secret_and_ignores_empty_ones() -> None:
    assert one_line(f" a\n\tb {KEY} c{KEY}", KEY, "") == "a b *** c***"


@pytest.mark.parametrize(
    "error",
    [
        IncompleteDownload("x"),
        DownloadError("x"),
        CorruptFile("a b.safetensors", "sha256:1", "sha256:2"),
        DockerUnavailable("x"),
        Unreachable("x"),
        GeneratorError("x"),
        ApiError("x"),
        AccessFailure("x"),
        TransportError("x"),
        UsageError("x"),
    ],
)
def test_every_error_class_is_an_aim_error(error: AimError) -> None:
    assert isinstance(error, AimError) and "\n" not in str(error)


def test_a_corrupt_file_keeps_its_exact_name_beside_the_one_line_message() -> None:
    bad = CorruptFile("dir/a  b.safetensors", "sha256:1", "sha256:2")
    assert bad.name == "dir/a  b.safetensors" and (bad.expected, bad.actual) == ("sha256:1", "sha256:2")
    assert str(bad) == "dir/a b.safetensors does not match the Hub's digest: expected sha256:1, got sha256:2"
