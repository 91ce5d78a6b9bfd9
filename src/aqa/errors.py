"""The one base class of expected failures.

An `AqaError` is bad input or a stale / damaged file, not a bug: the `aqa` command prints its
message as one line (`aqa <stage>: error: <message>`) and exits 1, and the traceback goes to the
log file only. Any other exception is a bug and keeps its traceback. Subclasses keep their own
names (ParamsError, FeatureCacheError, VideoError, ...) so callers can still tell them apart.
"""

from __future__ import annotations


class AqaError(ValueError):
    """An expected failure: bad input or a stale / damaged file; the message is one line naming the file or key."""


def one_line(message: str) -> str:
    """`message` folded onto one line: its non-blank lines joined by "; "."""
    lines = [line.strip() for line in str(message).splitlines()]
    return "; ".join(line for line in lines if line)
