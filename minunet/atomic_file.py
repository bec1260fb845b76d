"""Files written whole or not at all.

The content goes to a temporary file beside the target, is flushed to disk, then renamed over the target
(os.replace, atomic on POSIX): a process stopped at any moment, even by kill -9, leaves the old file or the new
one, never half of one. What it can leave is the temporary file, named TARGET.PID.XXXXXXXX.tmp after the process
that wrote it, so that the next start removes it (remove_stray_temporaries).
"""
import os
import tempfile
from pathlib import Path


class AtomicFile:
    """A temporary file beside `path` (.file, binary); commit() puts it in place of `path`,
    discard() removes it (a no-op once committed). As a context manager: committed on a normal exit, else
    discarded."""

    def __init__(self, path):
        self.path = Path(path)
        fd, self.tmp = tempfile.mkstemp(prefix=f"{self.path.name}.{os.getpid()}.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's file is private (0600); these are ordinary files
            self.file = open(self.tmp, "w+b")  # by name (for messages); readable too: a multi-page TIFF reads back
        finally:
            os.close(fd)

    def commit(self):
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise self._named(e) from None
        self.tmp = None

    def discard(self):
        if self.tmp is not None:
            try:
                self.file.close()
            except OSError:  # its buffer could not be written either (a full disk): it is removed anyway
                pass
            Path(self.tmp).unlink(missing_ok=True)  # missing: a Ctrl-C came between the rename and its record
            self.tmp = None

    def __enter__(self):
        return self.file

    def __exit__(self, kind, error, _):
        try:
            if kind is None:
                self.commit()
        finally:
            self.discard()
        if isinstance(error, OSError):
            raise self._named(error) from None

    def _named(self, error):
        """A write's OSError names no file (a full disk: "No space left on device"): name the one being written."""
        return error if error.filename else OSError(error.errno, error.strerror, str(self.path))


atomic_file = AtomicFile  # `with atomic_file(path) as f: ...` writes path whole or not at all


def write_bytes(path, data):
    with atomic_file(path) as f:
        f.write(data)


def _umask():
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def stray_temporaries(folder, names=None):
    """Temporary files left in folder by writes that were killed: with names (for a folder this process has
    locked), every NAME.*.tmp of those names; without, every TARGET.PID.XXXXXXXX.tmp whose process is gone."""
    folder = Path(folder)
    if names is not None:
        return sorted(p for name in names for p in folder.glob(f"{name}.*.tmp"))
    found = []
    for path in folder.glob("*.tmp"):
        parts = path.name[:-len(".tmp")].rsplit(".", 2)
        if len(parts) == 3 and parts[1].isdigit() and not _alive(int(parts[1])):
            found.append(path)
    return sorted(found)


def remove_stray_temporaries(folder, names=None):
    """Remove stray_temporaries(folder, names); returns their names."""
    removed = []
    for path in stray_temporaries(folder, names):
        try:
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            pass
    return removed


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
