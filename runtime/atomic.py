"""The one way disseg writes a file: a temp file in the same folder, checked, fsynced, then renamed onto the target.
A failed write (full disk, read-only mount, permission) removes the temp file, leaves an existing target untouched
and raises WriteFailed (exit 1) naming the path and the reason. `check_output` refuses a path that cannot be
written before any work starts (BadInput, exit 2)."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import BadInput, WriteFailed

LOW_SPACE = 64 * 1024  # bytes: below this a folder's disk counts as full
_UMASK = os.umask(0o022)  # read once, at import (single-threaded): mkstemp makes 0600 files, outputs get 0666 & ~umask
os.umask(_UMASK)


def os_reason(err: OSError) -> str:
    """ "no space left on device (ENOSPC)" for an OSError; its text where it carries no errno."""
    if err.errno in errno.errorcode:
        return f"{os.strerror(err.errno).lower()} ({errno.errorcode[err.errno]})"
    return str(err) or type(err).__name__


def disk_reason(folder: str | Path) -> str | None:
    """Why nothing more can be written into `folder`'s file system (full or read-only), or None."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    if st.f_flag & getattr(os, "ST_RDONLY", 1):
        return os_reason(OSError(errno.EROFS, ""))
    if st.f_blocks == 0:  # /proc, /sys: no storage behind it
        return "a virtual file system, not writable storage"
    if st.f_bavail * st.f_frsize < LOW_SPACE:
        return os_reason(OSError(errno.ENOSPC, ""))
    return None


def _hint(reason: str) -> str:
    if "ENOSPC" in reason or "EDQUOT" in reason:
        return "free space on that disk or write elsewhere"
    return "choose a writable location"


def write_failed(path: str | Path, reason: str) -> WriteFailed:
    return WriteFailed(f"cannot write {path}: {reason}; {_hint(reason)} (nothing was replaced)")


def _writable_folder(folder: Path) -> None:
    """Make `folder` (and its parents) or raise WriteFailed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failed(folder, os_reason(err)) from err


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (best effort: not every platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A temp file beside `path` (same suffix, so writers that pick a format by extension still do) that becomes
    `path` only through commit(); abort() removes it. For writers that stream into a file they open themselves,
    such as OpenCV's VideoWriter."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _writable_folder(self.path.parent)
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.stem}.", suffix=f".partial{self.path.suffix}", dir=self.path.parent
            )
        except OSError as err:
            raise write_failed(self.path, os_reason(err)) from err
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
        except (OSError, AttributeError):  # AttributeError: no fchmod (Windows)
            pass
        os.close(fd)
        self.tmp = tmp

    def commit(self) -> None:
        """fsync the temp file, rename it onto the target, fsync the folder. WriteFailed (temp removed) on error."""
        try:
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
        except OSError as err:
            self.abort()
            raise write_failed(self.path, os_reason(err)) from err
        _fsync_folder(self.path.parent)

    def fail(self, detail: str) -> WriteFailed:
        """The error for a write that did not complete: the disk's state where it explains it, else `detail`.
        Read before abort(), while the temp file still holds its space."""
        return write_failed(self.path, disk_reason(self.path.parent) or detail)

    def abort(self) -> None:
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(temp_path)`, then commit the temp file onto `path`. A write that raises OSError, or any error
    while the disk is full or read-only (torch, PIL and ONNX report those in their own words), becomes
    WriteFailed; the temp file is removed and `path` is left as it was."""
    target = AtomicFile(path)
    try:
        write(target.tmp)
    except OSError as err:
        error = target.fail(os_reason(err))
        target.abort()
        raise error from err
    except Exception as err:
        reason = disk_reason(target.path.parent)
        target.abort()
        if reason:
            raise write_failed(target.path, reason) from err
        raise
    except BaseException:
        target.abort()
        raise
    try:
        target.commit()
    except BaseException:  # a stop signal during the fsync: the temp file goes too (commit removes it on OSError)
        target.abort()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()

    atomic_write(path, write)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


MADE_FOLDERS: list[Path] = []  # folders check_output made for this command's outputs


def undo_made_folders() -> None:
    """Remove the folders check_output made that are still empty: a command refused with exit 2 leaves nothing."""
    for folder in sorted(MADE_FOLDERS, key=lambda f: len(f.parts), reverse=True):  # children before parents
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written), or gone
            pass
    MADE_FOLDERS.clear()


def check_output(path: str | Path, *, option: str, kind: str = "file") -> None:
    """Refuse, before any work, an output that cannot be written: a folder where a file is expected (kind="file")
    or the reverse (kind="folder"), a file in the way of its folder, a folder that is not writable. Missing
    folders are made here. Raises BadInput."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise BadInput(f"{option} {path}: is a folder; expected a file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise BadInput(f"{option} {path}: is a file; expected a folder")
    folder = _nearest_existing((path if kind == "folder" else path.parent).absolute())
    if not folder.is_dir():
        raise BadInput(f"{option} {path}: {folder} is a file, not a folder; choose another path")
    why = disk_reason(folder)
    if why is None and not os.access(folder, os.W_OK | os.X_OK):
        why = os_reason(OSError(errno.EACCES, ""))
    if why is not None:
        raise BadInput(f"{option} {path}: cannot write into {folder} ({why}); {_hint(why)}")
    wanted = (path if kind == "folder" else path.parent).absolute()
    missing = [f for f in (wanted, *wanted.parents) if not f.exists()]
    try:  # the folders it needs are made now: a check that cannot be fooled by what a path looks like
        wanted.mkdir(parents=True, exist_ok=True)
        MADE_FOLDERS.extend(missing)  # deepest first: what undo_made_folders removes if the command is refused
    except OSError as err:
        reason = os_reason(err)
        raise BadInput(
            f"{option} {path}: cannot make the folder {wanted} ({reason}); choose a writable location"
        ) from None
