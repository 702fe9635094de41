"""Running a script on a host: the command line, and the marker lines it reports with."""

import os
import time

import pytest

from tasks.remote import Marker, Result, collect, command_line, parse_markers


def test_markers_are_parsed_and_other_output_ignored():
    out = "noise\n::step provision changed\n  ::fail enable_site nginx -t rejected: unknown directive\n"
    assert parse_markers(out) == [
        Marker("step", "provision", "changed"),
        Marker("fail", "enable_site", "nginx -t rejected: unknown directive"),
    ]


def test_a_step_marker_carries_its_time_and_a_message_never_one():
    out = "::step provision changed 3.142\n::step push ok\n::fail push took 12.5\n::note push 1 2\n"
    assert parse_markers(out) == [
        Marker("step", "provision", "changed", 3.142),
        Marker("step", "push", "ok"),  # a server script of before: no time
        Marker("fail", "push", "took 12.5"),
        Marker("note", "push", "1 2"),
    ]


def test_commands_run_through_sudo_unless_root():
    assert command_line("echo 'hi'", "root") == "bash -c 'echo '\"'\"'hi'\"'\"''"
    assert command_line("true", "deploy") == "sudo -n bash -c true"


def test_the_last_error_line_is_what_a_failure_says():
    assert Result(1, "", "warning\n\nreal error\n  \n").last_error() == "real error"
    assert Result(1, "", "").last_error(otherwise="exited 1") == "exited 1"


class FakeChannel:
    """A channel whose command writes `stdout` and `stderr` in small pieces, interleaved, then exits
    (or never does); it can be select()ed on like paramiko's."""

    def __init__(self, stdout: bytes, stderr: bytes, code: int | None, piece: int = 4096) -> None:
        self.out = [stdout[i : i + piece] for i in range(0, len(stdout), piece)]
        self.err = [stderr[i : i + piece] for i in range(0, len(stderr), piece)]
        self.code = code
        self.read, self.write = os.pipe()
        os.write(self.write, b"x")  # always "readable": the loop asks the buffers what there is

    def fileno(self) -> int:
        return self.read

    def recv_ready(self) -> bool:
        # stdout's next piece only once stderr's is taken, as a command blocked on a full stderr would
        return bool(self.out) and len(self.err) <= len(self.out)

    def recv(self, size: int) -> bytes:
        return self.out.pop(0)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv_stderr(self, size: int) -> bytes:
        return self.err.pop(0)

    def exit_status_ready(self) -> bool:
        return self.code is not None and not self.out and not self.err

    def recv_exit_status(self) -> int:
        return self.code

    def close(self) -> None:
        os.close(self.read)
        os.close(self.write)


def test_stdout_and_stderr_are_read_together_whatever_their_size():
    channel = FakeChannel(b"o" * 3_000_000, b"e" * 3_000_000, 3)
    try:
        out, err, code = collect(channel, time.monotonic() + 30)
    finally:
        channel.close()
    assert (len(out), len(err), code) == (3_000_000, 3_000_000, 3)


def test_a_command_that_does_not_end_stops_at_the_deadline():
    channel = FakeChannel(b"started\n", b"", None)
    quiet, unused = os.pipe()
    channel.fileno = lambda: quiet  # nothing more comes: select waits
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            collect(channel, time.monotonic() + 0.3)
    finally:
        channel.close()
        os.close(quiet)
        os.close(unused)
    assert time.monotonic() - started < 2
