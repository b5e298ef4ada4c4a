"""System calls Python has no wrapper for, from the C library through ctypes (Linux; None elsewhere)."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any


def libc_function(name: str, argtypes: list[Any]) -> Callable[..., int] | None:
    """The C library's ``name`` taking ``argtypes`` and returning an int (errors in ``ctypes.get_errno()``), or
    None off Linux or where the C library lacks it. ctypes releases the GIL for the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function
