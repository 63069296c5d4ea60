"""The exception types users see: a one-line message naming the file, key or value at fault."""


class NowcastError(Exception):
    """Bad input or an impossible request. The CLI prints it on one line and exits 2."""


class MissingDependency(NowcastError):
    """A module that this feature needs is not installed (raised by util.optional_import)."""

    def __init__(self, module: str, extra: str, reason: str = ""):
        self.module, self.extra = module, extra
        super().__init__(f"{module} is needed here but cannot be imported"
                         + (f" ({reason})" if reason else "") + f"; install nowcast[{extra}]")
