"""GitHub's REST API as the plugin needs it: who owns a token, their verified email, their public organisations.

Every answer that is not a clear yes or no (unreachable, timeout, 5xx, rate limit, unreadable body) is
``GitHubUnavailable``, so callers can answer 503 and never let anyone in on a doubt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2

from upload_service import Problem, tls_context

TIMEOUT = httpx2.Timeout(10.0)
HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "upload-service",
}
MAX_ORG_PAGES = 10


class GitHubUnavailable(Exception):
    """GitHub gave no usable answer; the message says what happened (never a token)."""


class BadCredentials(Exception):
    """GitHub answered 401: the token is not (or no longer) valid."""


@dataclass(frozen=True)
class GitHubUser:
    id: int
    login: str
    email: str | None


def http_client() -> httpx2.AsyncClient:
    """A client for one sign-in or one token check; GitHub is asked rarely (answers are cached), and the TLS
    context is the process's one (a new one costs ~27 ms of CPU)."""
    return httpx2.AsyncClient(timeout=TIMEOUT, follow_redirects=False, headers=HEADERS, verify=tls_context())


def unavailable(error: GitHubUnavailable) -> Problem:
    return Problem(503, f"GitHub could not be asked to check the credentials ({error}); try again later",
                   reason="github_unavailable", headers={"Retry-After": "30"})


class GitHubAPI:
    """Calls made with one user's token."""

    def __init__(self, api_url: str, token: str, http: httpx2.AsyncClient) -> None:
        self.api_url = api_url
        self.http = http
        self._auth = {"Authorization": f"Bearer {token}"}

    async def _get(self, url: str, params: dict[str, Any] | None = None) -> httpx2.Response:
        try:
            response = await self.http.get(url, params=params, headers=self._auth)
        except httpx2.HTTPError as error:
            raise GitHubUnavailable(f"{type(error).__name__} talking to {self.api_url}") from None
        if response.status_code == 401:
            raise BadCredentials()
        rate_limited = response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0"
        if response.status_code >= 500 or response.status_code == 429 or rate_limited:
            raise GitHubUnavailable(f"GitHub answered {response.status_code}")
        return response

    @staticmethod
    def _json(response: httpx2.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise GitHubUnavailable(f"GitHub answered {response.status_code} with a body that is not JSON") from None

    async def user(self) -> GitHubUser:
        """The token's owner (``GET /user``)."""
        response = await self._get(f"{self.api_url}/user")
        data = self._json(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise GitHubUnavailable(f"GitHub answered {response.status_code} for /user")
        if not isinstance(data.get("id"), int) or not isinstance(data.get("login"), str):
            raise GitHubUnavailable("GitHub's /user answer has no id or login")
        email = data.get("email")
        return GitHubUser(id=data["id"], login=data["login"], email=email if isinstance(email, str) else None)

    async def primary_email(self) -> str | None:
        """The primary verified address (``GET /user/emails``, scope ``user:email``), for users who hide theirs."""
        response = await self._get(f"{self.api_url}/user/emails")
        if response.status_code != 200:
            return None  # the token lacks the scope: an identity without email is still an identity
        emails = self._json(response)
        for entry in emails if isinstance(emails, list) else []:
            if isinstance(entry, dict) and entry.get("primary") and entry.get("verified"):
                return entry.get("email")
        return None

    async def public_orgs(self, login: str) -> set[str]:
        """Lower-cased logins of the organisations ``login`` is a public member of (``GET /users/<login>/orgs``)."""
        url: str | None = f"{self.api_url}/users/{quote(login, safe='')}/orgs"
        params: dict[str, Any] | None = {"per_page": 100}
        orgs: set[str] = set()
        for _ in range(MAX_ORG_PAGES):
            if url is None:
                break
            response = await self._get(url, params)
            data = self._json(response)
            if response.status_code != 200 or not isinstance(data, list):
                raise GitHubUnavailable(f"GitHub answered {response.status_code} for the organisations of @{login}")
            orgs.update(org["login"].lower() for org in data
                        if isinstance(org, dict) and isinstance(org.get("login"), str))
            url, params = response.links.get("next", {}).get("url"), None
        return orgs
