"""Running a script on a host: the command line, and the marker lines it reports with."""

from tasks.remote import Marker, Result, command_line, parse_markers


def test_markers_are_parsed_and_other_output_ignored():
    out = "noise\n::step provision changed\n  ::fail enable_site nginx -t rejected: unknown directive\n"
    assert parse_markers(out) == [
        Marker("step", "provision", "changed"),
        Marker("fail", "enable_site", "nginx -t rejected: unknown directive"),
    ]


def test_commands_run_through_sudo_unless_root():
    assert command_line("echo 'hi'", "root") == "bash -c 'echo '\"'\"'hi'\"'\"''"
    assert command_line("true", "deploy") == "sudo -n bash -c true"


def test_the_last_error_line_is_what_a_failure_says():
    assert Result(1, "", "warning\n\nreal error\n  \n").last_error() == "real error"
    assert Result(1, "", "").last_error(otherwise="exited 1") == "exited 1"
