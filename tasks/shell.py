"""Server scripts built from data: every value quoted once, in a block of its own, apart from the code.

A server script is, in this order:
1. the assignment block: every value the script reads (paths, names, the settings it uses), each
   quoted by `assignment` (`NAME='value'`, arrays `NAME=('a' 'b')`), between two marker lines;
2. the kit's runtime files it includes (tasks/runtime: each *.sh as it is, each *.py as a variable
   PY_<NAME> holding its source, run with `run_py "$PY_NAME" ARG...`);
3. its own lines, each built by `line`: a call of a runtime function, every word quoted unless it is
   a `Var`, a reference to a value of the block (Kamal builds commands as arrays of tokens, too).

So no value is ever spliced into code: values travel in the block, or as files on stdin (the tar).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from tasks import runtime

if TYPE_CHECKING:
    from tasks.layout import Layout

VALUES_BEGIN = "# ---- values: data only, quoted; nothing below splices a value into code"
VALUES_END = "# ---- end of values"
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class Var:
    """A value of the assignment block, as one word: "$NAME", or "$NAME"/suffix with a quoted suffix."""

    name: str
    suffix: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"not a value name: {self.name!r}")

    def word(self) -> str:
        return f'"${self.name}"' + (shlex.quote(self.suffix) if self.suffix else "")


def ref(layout: Layout, path: str) -> Var:
    """A path of the layout as a reference to its value: /srv/app/shared/x -> "$SHARED_DIR"/x (the
    layout's longest path it lies under). Planners name server paths this way, never by their value."""
    fields = asdict(layout)
    under = [f for f, v in fields.items() if path == v or path.startswith(v.rstrip("/") + "/")]
    if not under:
        raise ValueError(f"{path} is not in the layout")
    field = max(under, key=lambda f: len(fields[f]))
    return Var(field.upper(), path[len(fields[field]) :])


@dataclass(frozen=True)
class Each:
    """Every element of an array value, each its own word: "${NAME[@]}"."""

    name: str

    def word(self) -> str:
        return f'"${{{self.name}[@]}}"'


Value = str | int | bool | Sequence[str]
Word = str | int | Var | Each


def word(token: Word) -> str:
    if isinstance(token, Var | Each):
        return token.word()
    return shlex.quote(str(token))


def line(*tokens: Word) -> str:
    """One command: its first token names a runtime function (or a command), every other is quoted."""
    return " ".join(word(token) for token in tokens)


def assignment(name: str, value: Value) -> str:
    """NAME=quoted value: a string, a number, a bool (1 or 0), or a sequence of strings (an array)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a value name: {name!r}")
    if isinstance(value, bool):
        return f"{name}={int(value)}"
    if isinstance(value, str | int):
        return f"{name}={shlex.quote(str(value))}"
    return f"{name}=(" + " ".join(shlex.quote(str(item)) for item in value) + ")"


@dataclass(frozen=True)
class Script:
    """A bash script for one remote command: what it is for, its values, the runtime files, its lines."""

    title: str
    values: Mapping[str, Value]
    includes: Sequence[str]  # runtime files, in order: "lock.sh", "probe.py"
    lines: Sequence[str]

    def render(self) -> str:
        block = [assignment(name, value) for name, value in sorted(self.values.items())]
        if block:
            block = ["# shellcheck disable=SC2034  # a script gets every value its runtime files may read",
                     "{", *block, "}"]  # fmt: skip
        return "\n".join([
            "#!/bin/bash",
            f"# flaskdeploy: {self.title}. Generated; see tasks/README.md.",
            "set -u",
            VALUES_BEGIN,
            *block,
            VALUES_END,
            *(runtime.include(name) for name in self.includes),
            "# ---- this script",
            *self.lines,
            "",
        ])  # fmt: skip
