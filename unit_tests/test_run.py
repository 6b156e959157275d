"""run.py: the command line before the CDK loads: --help and --version on stdout (exit 0), no or an unknown command
a usage on stderr (exit 2), and a signal before write reads input one ERROR trace with exit 128 + the signal."""

from __future__ import annotations

import json
import signal

import pytest

from destination_kvdb import run


@pytest.fixture(autouse=True)
def _keep_the_signal_handlers():
    before = {number: signal.getsignal(number) for number in run.EXIT_CODES}
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


def exit_code_of(argv: list[str], mocker) -> int:
    mocker.patch.object(run.sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        run.run()
    return exited.value.code


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_on_stdout(flag, mocker, capsys):
    assert exit_code_of(["destination-kvdb", flag], mocker) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: destination-kvdb spec\n") and "write --config CONFIG --catalog CATALOG < MESSAGES" in out
    assert err == ""


def test_from_a_checkout_the_usage_names_main_py(mocker, capsys):
    assert exit_code_of(["/src/main.py", "--help"], mocker) == 0
    assert capsys.readouterr().out.startswith("usage: python main.py spec\n")


def test_version_prints_the_connectors_name_and_version(mocker, capsys):
    assert exit_code_of(["destination-kvdb", "--version"], mocker) == 0
    assert capsys.readouterr().out.startswith("destination-kvdb ")


@pytest.mark.parametrize("args, first_line", [([], "no command given"), (["wrtie"], "unknown command 'wrtie'")])
def test_no_or_an_unknown_command_is_a_usage_on_stderr_and_exit_2(args, first_line, mocker, capsys):
    assert exit_code_of(["destination-kvdb", *args], mocker) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(first_line + "\nusage: destination-kvdb spec\n")


@pytest.mark.parametrize("received, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_before_input_is_read_ends_the_run_with_one_trace(received, code, mocker, capfd):
    mocker.patch.object(run.sys, "argv", ["destination-kvdb", "spec"])
    mocker.patch("destination_kvdb.destination.DestinationKvdb.run", side_effect=lambda args: signal.getsignal(received)(received, None))
    with pytest.raises(SystemExit) as exited:
        run.run()
    assert exited.value.code == code
    [trace] = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert trace["trace"]["error"] == {
        "message": f"stopped by {received.name} before any input was read: nothing was stored or deleted",
        "failure_type": "transient_error",
    }
    assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # a second signal changes nothing
