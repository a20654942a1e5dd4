"""The command line: a thin Typer layer over the library (parse, call one function, render)."""
