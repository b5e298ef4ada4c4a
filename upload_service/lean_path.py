"""What the raw-upload lane (``api.raw_lane``) may skip: request functions marked ``ignores_raw_uploads``.

The lane answers ``PUT /api/files/<name>`` from API clients below Quart, so the blueprint's and the app's
``before_request``/``after_request`` functions do not run for it. It is taken only while every such function is
marked here as one that does nothing for those requests, or whose work the lane does itself (the access log, the
security headers); one unmarked function, a host app's or a plugin's, turns the lane off and every request
goes through Quart as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
MARK = "__upload_service_ignores_raw_uploads__"


def ignores_raw_uploads(function: F) -> F:
    """Mark a ``before_request``/``after_request``/``teardown_request`` function of yours as doing nothing for an
    API client's raw upload (``PUT /api/files/<name>`` with a bearer token), so the service may keep answering
    those below Quart, the way it does without your function. Put it under the ``@bp.after_request`` line."""
    setattr(function, MARK, True)
    return function


def all_ignore_raw_uploads(functions: Iterable[Callable[..., Any]]) -> bool:
    return all(getattr(function, MARK, False) for function in functions)
