"""nltrace: see what the Linux kernel does with netlink messages."""

__version__ = "0.1.0"
