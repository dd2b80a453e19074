"""Writing output files atomically, alone or as a set, with the modes a plain `open()` would give.

Readers (a dashboard, a CI job, a glob on `*-detail-report.csv`) must never see half a file, nor
half of a report set: each file is written to a temporary name beside its target and renamed only
once every file of the set is written, and a failure removes the temporaries (and any file of the
set already renamed), so nothing of the set is left. `tempfile.mkstemp` creates files mode 0600
whatever the umask, which hid the CSVs from the group a dashboard reads them as; the files get the
mode `open()` would give under the process umask instead (0644 under umask 022, 0640 under 027).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

PLAIN_MODE = 0o666  # what open() asks for, before the umask
EXECUTABLE_MODE = 0o777


class AtomicWriteError(OSError):
    """Writing `path` failed with `cause` (the system's words, e.g. "No space left on device");
    nothing of the set it belonged to was kept."""

    def __init__(self, path: Path, cause: str):
        super().__init__(f"{cause} writing {path.name}")
        self.path = path
        self.cause = cause


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (`os.umask` sets it
    while reading it, which another thread could observe)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    found = re.search(r"^Umask:\s*([0-7]+)$", status, re.MULTILINE)
    if found:
        return int(found.group(1), 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def file_mode(executable: bool = False) -> int:
    """The mode a file created by `open()` (or `chmod +x` of one) has under the current umask."""
    return (EXECUTABLE_MODE if executable else PLAIN_MODE) & ~current_umask()


def write_files_atomically(texts: Mapping[Path, str], executable: frozenset[Path] = frozenset()) -> None:
    """Writes every `path: text` (UTF-8, "\\n" line ends) all or nothing: each to a temporary
    file beside its path, then, once all are written, renamed into place. On any failure every
    temporary is removed, and so is any file of the set already renamed that did not exist before,
    then `AtomicWriteError` names the file and the cause. Paths in `executable` get the
    executable mode."""
    temporaries: dict[Path, Path] = {}
    renamed: list[Path] = []
    current: Path | None = None
    try:
        for path, text in texts.items():
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temporaries[path] = Path(temporary)
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
                stream.write(text)
            os.chmod(temporary, file_mode(path in executable))
        existed = {path for path in texts if path.exists()}
        for path, temporary in temporaries.items():
            current = path
            os.replace(temporary, path)
            if path not in existed:
                renamed.append(path)
    except BaseException as error:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        for path in renamed:
            path.unlink(missing_ok=True)
        if isinstance(error, OSError) and current is not None:
            raise AtomicWriteError(current, error.strerror or str(error)) from error
        raise


def write_text_atomically(text: str, path: Path, executable: bool = False) -> None:
    """One file, written beside its target and renamed, so a reader never sees half of it."""
    write_files_atomically({path: text}, frozenset({path}) if executable else frozenset())
