"""The files commands write (streams, exports): "-" is standard output, and a
failed open or close is a CannotWrite naming the file."""

import os
import stat
import sys

from nltrace.errors import CannotWrite


def open_output(path):
    """path for writing, truncated; a regular file readable by its owner
    only (mode 0600, an existing one too: what nltrace writes may hold what
    the traced processes said)."""
    if path == "-":
        return sys.stdout.buffer
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise CannotWrite(f"cannot write {path}: {e.strerror}") from None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):      # not a FIFO's or a device's (-o /dev/null)
            os.fchmod(fd, 0o600)
    except OSError as e:
        os.close(fd)
        raise CannotWrite(f"cannot make {path} private (mode 0600): {e.strerror}") from None
    return os.fdopen(fd, "wb")


def close_output(out, path):
    """Flush and close out (standard output stays open)."""
    try:
        out.flush()
    except OSError as e:
        raise CannotWrite(f"writing {path} failed: {e.strerror or e}") from None
    finally:
        if out is not sys.stdout.buffer:
            try:
                out.close()
            except OSError:
                pass   # the flush above already failed and said so
