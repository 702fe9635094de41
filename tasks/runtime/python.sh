# shellcheck shell=bash
# How server scripts run the kit's Python files (runtime/*.py): each travels in the script as a variable
# holding its source (PY_PROBE holds probe.py; see tasks/shell.py), and runs from stdin, isolated from
# the environment and the current directory (-I), without site-packages (-S: they need the standard
# library only, and a deploy starts several).
#
# Defines: run_py

run_py() {  # SOURCE ARG...: run the Python program SOURCE with python3
    local source=$1
    shift
    python3 -I -S - "$@" <<<"$source"
}
