"""The headers every answer of the service carries, set in one place (an ``after_request``), not per route.

HTML pages get the UI's Content-Security-Policy (scripts and styles from this origin only); everything else
(JSON, problem details, tus answers, static files, downloads) gets a policy that allows nothing at all, so a
body that a browser was tricked into rendering still could not run or load anything. Every answer forbids
framing (``frame-ancestors``, and ``X-Frame-Options`` for older browsers), MIME sniffing and cross-origin
referrers. A route that needs a stricter policy (downloads add ``sandbox``) sets its own; it is kept.
"""

from __future__ import annotations

from quart import Blueprint, Quart, Response

from .lean_path import ignores_raw_uploads

LOCKED_DOWN = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def add_security_headers(response: Response, html_policy: str = LOCKED_DOWN) -> Response:
    """Set what is missing of the security headers on ``response`` (headers a route set stay). The names present
    are read once: ``setdefault`` per header scanned the whole list, lower-casing every name, each time."""
    present = {name.lower() for name, _ in response.headers.items()}
    for name, value in ALWAYS.items():
        if name.lower() not in present:
            response.headers.add(name, value)
    if "content-security-policy" not in present:
        policy = html_policy if response.mimetype == "text/html" else LOCKED_DOWN
        response.headers.add("Content-Security-Policy", policy)
    return response


def register_security_headers(target: Blueprint | Quart, html_policy: str = LOCKED_DOWN) -> None:
    """Every answer of ``target`` (the service's blueprint, or a whole stand-alone app) gets the headers."""

    @ignores_raw_uploads  # the raw-upload lane adds them itself
    async def security_headers(response: Response) -> Response:
        return add_security_headers(response, html_policy)

    target.after_request(security_headers)
