"""What every public link route does first: find the link by its token, refuse what is gone, and ask for the
password where one is set; and the password form's answer (the same for share links and file requests).

Unknown, malformed and revoked tokens get the very same 404, so a visitor learns nothing by guessing; an
expired or used-up link is 410. Browsers get these as small HTML pages, scripts (``Accept: application/json``)
as problem details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from quart import Response, redirect, render_template, request

from upload_service import Problem

from .passwords import count_failure, give_back, retry_after
from .records import FileRequest, Share

if TYPE_CHECKING:
    from upload_service import UploadService

    from .passwords import Passwords
    from .store import LinkStore
    from .unlock import Unlocks

R = TypeVar("R", Share, FileRequest)
MAX_FORM = 8192
NOT_FOUND = "no such link: it never existed or its owner revoked it"


def refuse_if_closed(record: Share | FileRequest, full: int = 410) -> None:
    """410 for an expired link; ``full`` (410, or 409 for an upload to a full request) for one at its limit."""
    if record.expired():
        raise Problem(410, "this link has expired", reason="expired")
    if record.used_up:
        raise Problem(full, "this link has reached its limit", reason="used_up")


def not_found() -> Problem:
    """Unknown, malformed and revoked tokens all get this one answer."""
    return Problem(404, NOT_FOUND, reason="not_found")


def wants_json() -> bool:
    """JSON unless the client names ``text/html`` itself (browsers do; curl's ``*/*`` and scripts get JSON)."""
    named = {value.lower(): quality for value, quality in request.accept_mimetypes}
    html = named.get("text/html", 0)
    return not html or html < max(named.get("application/json", 0), named.get("application/problem+json", 0))


async def problem_page(problem: Problem) -> Any:
    """The problem as a page for a browser, or raised for the service's problem+json answer."""
    if wants_json() or request.method == "HEAD":
        raise problem
    body = await render_template("upload_service/link_problem.html", problem=problem)
    return Response(body, problem.status, problem.headers, content_type="text/html")


class Visits:
    """Finding a link for a visitor, and unlocking it with its password."""

    def __init__(self, service: UploadService, links: LinkStore, unlocks: Unlocks, passwords: Passwords) -> None:
        self.service = service
        self.links = links
        self.unlocks = unlocks
        self.passwords = passwords

    async def open(self, token: str, kind: type[R], *, unlocked: bool = True, full: int = 410,
                   closed_too: bool = False) -> R:
        """The live link of this kind, or the problem a visitor gets (404, 410, and 401 while locked).

        ``full``: the status for a link that reached its limit (410; an upload to a full request gets 409).
        ``closed_too``: an expired or used-up link is found too."""
        record = await self.links.find(token)
        if not isinstance(record, kind):
            raise not_found()
        if not closed_too:
            refuse_if_closed(record, full)
        if unlocked and not self.unlocks.unlocked(record, request.cookies):
            raise Problem(401, "this link needs its password: POST it as {\"password\": ...} or with the form",
                          reason="password_required")
        return record

    async def key_scope(self, token: str, kind: type[R]) -> str:
        """The scope of a visitor's ``Idempotency-Key`` on the link's routes: the link itself, found as ``open``
        finds it but closed too, so the retry of an upload that filled the link or outlived it is answered as
        the first was (a revoked link answers nothing: 404)."""
        record = await self.open(token, kind, closed_too=True)
        return f"sharing-{kind.__name__.lower()}-{record.id}"

    async def unlock(self, token: str, kind: type[R], page_endpoint: str) -> Any:
        """Check a password; right: the unlock cookie and back to the page (JSON: 204), wrong: 403, too many: 429."""
        record = await self.open(token, kind, unlocked=False)
        password = await self._presented_password()
        if not record.has_password:
            return self._unlocked(record, page_endpoint)
        address = request.remote_addr or ""

        def take_attempt(current: R) -> None:
            """Count the attempt before checking it, so that racing guesses cannot pass the limit; a right
            password gives it back."""
            wait = retry_after(current.attempts, address)
            if wait is not None:
                raise Problem(429, "too many wrong passwords; try again later", reason="too_many_attempts",
                              headers={"Retry-After": str(wait)})
            count_failure(current.attempts, address)

        record, _ = await self.links.change(record, take_attempt)
        assert record.password_hash is not None
        if not await self.passwords.matches(record.password_hash, password or ""):
            raise Problem(403, "wrong password", reason="wrong_password")
        record, _ = await self.links.change(record, lambda current: give_back(current.attempts, address))
        return self._unlocked(record, page_endpoint)

    async def _presented_password(self) -> str | None:
        if (request.mimetype or "") == "application/json":
            body = await self.service.read_json(request, MAX_FORM)
            value = body.get("password") if isinstance(body, dict) else None
        elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            if (request.content_length or 0) > MAX_FORM:
                raise Problem(413, "the form is too large", reason="too_large")
            value = (await request.form).get("password")
        else:
            raise Problem(415, "send the password as JSON or as a form", reason="unsupported_type")
        if value is not None and not isinstance(value, str):
            raise Problem(400, "password: a string", reason="bad_json")
        return value

    def _unlocked(self, record: Share | FileRequest, page_endpoint: str) -> Any:
        page = self.service.url(page_endpoint, token=record.token)
        response = Response(b"", 204) if wants_json() else redirect(page, 303)
        response.set_cookie(self.unlocks.cookie_name(record), self.unlocks.value(record),
                            max_age=self.unlocks.max_age(record), path=page, httponly=True, samesite="Lax",
                            secure=request.scheme == "https")
        return response

