"""The files commands write (streams, exports): "-" is standard output, and a
failed open or close is a CannotWrite naming the file."""

import sys

from nltrace.errors import CannotWrite


def open_output(path):
    try:
        return sys.stdout.buffer if path == "-" else open(path, "wb")
    except OSError as e:
        raise CannotWrite(f"cannot write {path}: {e.strerror}") from None


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
