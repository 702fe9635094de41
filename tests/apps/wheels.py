"""Pure-Python wheels of tiny packages, written by the tests themselves: the resolver and pip take them from
a find-links folder, so that a test needs no index and builds nothing.

    pure_wheel(links, "kitpin", "2.0")   # links/kitpin-2.0-py3-none-any.whl: `import kitpin; kitpin.VERSION`
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Mapping
from pathlib import Path


def pure_wheel(folder: Path, name: str, version: str, more: Mapping[str, str] | None = None) -> Path:
    """A wheel of package `name` whose module says its version (`VERSION`), in folder; with `more` files
    (path in site-packages -> text), like a .pth file."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        **(more or {}),
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={_digest(text)},{len(text)}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _digest(text: str) -> str:
    """A file's hash as a wheel's RECORD writes it: urlsafe base64 of its sha256, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
