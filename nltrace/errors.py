"""The errors the engine raises; cli.py turns each into one line and an exit status."""


class NltraceError(Exception):
    """Something the user can act on, said in one line (or a few, for
    CannotTrace). exit_status: what the command exits with."""
    exit_status = 1


class CannotTrace(NltraceError):
    """This kernel or process cannot trace (no kprobes, no privileges, ...)."""


class LoadError(NltraceError):
    """The BPF programs did not compile, load or attach."""


class Interrupted(NltraceError):
    """Ctrl-C or SIGTERM before tracing began."""
    exit_status = 130


class BadInput(NltraceError):
    """An --input stream that cannot be read: missing, not a stream, corrupt,
    cut short, or of the other mode."""


class BadFilter(NltraceError):
    """A filter that names nothing on this kernel (--protocol, --type)."""


class CannotWrite(NltraceError):
    """An output that cannot be opened or written: a missing directory, a full disk."""
