"""Exceptions raised by the plastic library.

The library never prints or exits: it raises a :class:`PlasticError` subclass with a message written for
the person who called it. The CLI turns every one of them into a single ``Error: ...`` line and exit 2.

Messages are written once, naming the command line's options (``pass --arch NAME``); read from Python
(``str(error)`` outside the CLI) they name the keyword arguments instead (``pass arch=NAME``). Commands
quoted in a message (``plastic reinit --strategy layers ...``, anything in backticks) stay commands.
"""

from __future__ import annotations

import contextvars
import re

# Set by the CLI for the duration of one command: messages keep their option spelling there.
CLI_SPELLING: contextvars.ContextVar[bool] = contextvars.ContextVar("plastic_cli_spelling", default=False)

# options whose keyword is not the option's own name (or that are switches)
_KEYWORDS = {
    "from": "from_block",
    "no-reference": "reference=False",
    "reference": "reference=True",
    "force": "force=True",
    "include-head": "include_head=True",
    "amp": "amp=True",
    "dry-run": "dry_run=True",
    "keep-extra": "keep_extra=True",
    "json": "to_dict()",
}
_COMMAND = re.compile(r"`[^`]*`|plastic (?:inspect|diagnose|reinit|strategies)\b[^;)\n]*")
_OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)(?: ([^\s,;:()]+))?")
# a word after an option that is the sentence going on, not the option's value
_PROSE_WORDS = (
    "or and with to is are the a an applies apply needs need takes take must may can only not for of "
    "in on as at by if when was were has have gives give do does did be it its them their this that "
    "one every any from than"
)
_PROSE = frozenset(_PROSE_WORDS.split())


def python_spelling(text: str) -> str:
    """A message's ``--option VALUE`` as ``option=VALUE`` (``--option`` alone as ``option``) outside
    quoted commands."""

    def keyword(m: re.Match[str]) -> str:
        name, value = m.group(1), m.group(2)
        word = _KEYWORDS.get(name, name.replace("-", "_"))
        tail = f" {value}" if value is not None else ""
        if "=" in word or word.endswith(")"):  # a switch: its value is implied
            return word + tail
        if value is None or value in _PROSE:
            return word + tail
        return f"{word}={value}"

    def prose(part: str) -> str:
        part = re.sub(r"(?<![\w-])-o (\S+)", r"output=\1", part)  # the one short option messages name
        return _OPTION.sub(keyword, part)

    out, last = [], 0
    for cmd in _COMMAND.finditer(text):
        out += [prose(text[last : cmd.start()]), cmd.group(0)]
        last = cmd.end()
    out.append(prose(text[last:]))
    return "".join(out)


class PlasticError(Exception):
    """Base class: bad input or a request that cannot be satisfied (exit code 2 in the CLI).

    ``choices``: where the message names a few of the valid values (block names, say), every one of
    them, for a caller that wants to pick from the whole list.
    """

    def __init__(self, *args: object, choices: list[str] | None = None) -> None:
        super().__init__(*args)
        self.choices: list[str] = list(choices or [])

    def __str__(self) -> str:
        text = super().__str__()
        return text if CLI_SPELLING.get() else python_spelling(text)


class CheckpointError(PlasticError):
    """A checkpoint file is missing, truncated, corrupt, or of an unknown kind."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle would need to run code (an unsafe global) to load; it is refused, never executed."""


class UsageError(PlasticError):
    """Options that contradict each other or name something that does not exist."""


class StrategyError(UsageError):
    """A registered strategy failed or returned a plan that does not fit the checkpoint (a plug-in's
    mistake, named with the strategy; the original exception is chained)."""


class ArchitectureError(PlasticError):
    """The architecture is unknown, ambiguous, or does not match the checkpoint."""


class DataError(PlasticError):
    """The calibration data cannot be used (missing folder, no readable image)."""


class DeviceError(PlasticError):
    """The requested device is not available (e.g. ``--device cuda`` without CUDA)."""


class OutputError(PlasticError):
    """An output cannot be written (would overwrite the input or an existing file without --force)."""


class ResourceError(PlasticError):
    """The machine ran out of something plastic needs: memory (RAM, a ``ulimit -v`` address-space cap)."""


def is_allocation_failure(e: BaseException) -> bool:
    """A memory failure, as Python (MemoryError) or PyTorch's CPU allocator (a RuntimeError) reports it."""
    if isinstance(e, MemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "DefaultCPUAllocator" in text or "std::bad_alloc" in text
    )


MEMORY_HINT = "lower --batch-size or --max-images, or raise the memory limit (ulimit -v)"
