"""The one exception type users see: a one-line message naming the file, key or value at fault."""


class NowcastError(Exception):
    """Bad input or an impossible request. The CLI prints it on one line and exits non-zero."""
