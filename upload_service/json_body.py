"""JSON request bodies, parsed in one place: every route that takes JSON refuses the same bodies the same way.

A body is parsed straight from its bytes with msgspec (a few times faster than ``json`` on the long strings of
base64 uploads), and must be nested at most ``MAX_JSON_DEPTH`` levels deep: deeper is a 400 problem. Without the
bound, a body of a thousand ``[`` made the parser raise ``RecursionError`` (a 500, with a stack trace logged each
time), and a few hundred levels were parsed and kept, as persist metadata, for every later reader to choke on.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Request

from .body import read_all
from .errors import Problem

MAX_JSON_DEPTH = 64  # far more than any body of the API needs: metadata a few levels deep
MAX_JSON_CONTAINERS = 10_000  # objects and arrays in one body: parsing a million empty ones takes seconds of CPU
JSON_TYPE = "application/json"
_DECODER = msgspec.json.Decoder()
_CONTAINERS = (list, dict)


def parse_json(raw: bytearray, max_depth: int = MAX_JSON_DEPTH, max_containers: int = MAX_JSON_CONTAINERS) -> Any:
    """The document in ``raw`` (cleared as soon as the document exists); 400 when it is not JSON or is nested
    deeper than ``max_depth``, 413 with more than ``max_containers`` objects and arrays (counted before parsing:
    32 MiB of ``[[],[],...]`` took msgspec two seconds of event-loop time, for every user of the process)."""
    openings = raw.count(b"[") + raw.count(b"{")  # an upper bound on the depth and the containers, at memchr speed
    if openings > max_containers:
        raw.clear()
        raise Problem(413, f"the JSON body holds more than {max_containers} objects and arrays",
                      reason="json_too_large", max_containers=max_containers)
    try:
        document = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise Problem(400, "the body is not valid JSON", reason="bad_json") from None
    except RecursionError:  # msgspec's own guard, far past max_depth: nothing overflowed
        raise _too_deep(max_depth) from None
    finally:
        raw.clear()
    if openings > max_depth and _deeper_than(document, max_depth):
        raise _too_deep(max_depth)
    return document


async def read_json(request: Request, max_size: int, idle_timeout: float,
                    max_containers: int = MAX_JSON_CONTAINERS) -> Any:
    """A request's whole JSON body, parsed: 415 unless it is ``application/json``, 413 past ``max_size``."""
    if (request.mimetype or "").lower() != JSON_TYPE:
        raise Problem(415, f"send the body as {JSON_TYPE}", reason="unsupported_type")
    return parse_json(await read_all(request, max_size, idle_timeout, what="JSON body"), max_containers=max_containers)


def _too_deep(max_depth: int) -> Problem:
    return Problem(400, f"the JSON body is nested deeper than {max_depth} levels", reason="json_too_deep",
                   max_depth=max_depth)


def _deeper_than(document: Any, max_depth: int) -> bool:
    """Whether any value of ``document`` lies more than ``max_depth`` containers deep: level by level, with no
    recursion, looking only into containers."""
    level = [document] if isinstance(document, _CONTAINERS) else []
    for _ in range(max_depth):
        below: list[Any] = []
        for node in level:
            below += [child for child in (node.values() if type(node) is dict else node)
                      if type(child) in _CONTAINERS]
        if not below:
            return False
        level = below
    return True
