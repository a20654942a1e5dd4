"""The command line: a thin Typer layer over the library (parse, call one function, render)."""


class StdoutClosed(Exception):
    """The reader of stdout went away (``plastic ... | head``): main() exits as SIGPIPE would. Here,
    not in ``console``, so that main() can catch it without importing rich."""
