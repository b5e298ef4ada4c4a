"""A GitHub double: a small real HTTP server on 127.0.0.1 that speaks the shapes of GitHub's OAuth and REST API.

It plays both ``GITHUB_URL`` (``/login/oauth/authorize``, ``/login/oauth/access_token``) and, under ``/api/v3``
like GitHub Enterprise, ``GITHUB_API_URL`` (``/user``, ``/user/emails``, ``/users/<login>/orgs``,
``/orgs/<org>/public_members/<login>``). The authorize page approves at once as ``signed_in_as`` (the newest user;
or denies when ``deny`` is set), so a browser or an HTTP client goes straight through. Codes are single-use and checked
against PKCE S256, the client credentials and the redirect URI, and errors come back as GitHub sends them:
HTTP 200 with ``{"error": ...}``. ``down`` makes every route answer 503; ``calls`` counts requests by route.
Given a certificate and its key, it answers over TLS (``https://``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .servers import free_port

CLIENT_ID = "Iv1.double0123456789"
CLIENT_SECRET = "double-secret-0123456789abcdef0123456789"
DOCS = "https://docs.github.com/rest"


@dataclass
class FakeUser:
    id: int
    login: str
    email: str | None = None  # the public email; None when the user keeps it private
    emails: list[dict[str, Any]] = field(default_factory=list)
    public_orgs: list[str] = field(default_factory=list)
    private_orgs: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"login": self.login, "id": self.id, "node_id": f"U_{self.id}", "type": "User", "site_admin": False,
                "name": self.login.title(), "email": self.email,
                "avatar_url": f"https://avatars.example/u/{self.id}", "html_url": f"https://github.example/{self.login}"}


@dataclass
class Grant:
    user_id: int
    redirect_uri: str | None
    challenge: str | None
    method: str | None


class GitHubDouble:
    def __init__(self, certificate: tuple[Path, Path] | None = None) -> None:
        self.client_id, self.client_secret = CLIENT_ID, CLIENT_SECRET
        self.users: dict[int, FakeUser] = {}
        self.tokens: dict[str, tuple[int, set[str]]] = {}
        self.grants: dict[str, Grant] = {}
        self.calls: Counter[str] = Counter()
        self.token_requests: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.signed_in_as: str | None = None
        self.deny = False
        self.down = False
        self.token_error: str | None = None  # force the next token answer to be this error
        self.lock = threading.Lock()
        # a port from this test worker's own slice: an ephemeral one may have just belonged to another worker's
        # double, whose services would then count their calls here
        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(self))
        self.scheme = "https" if certificate else "http"
        if certificate:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(*certificate)
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- running ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3"

    def settings(self) -> dict[str, str]:
        """The service settings that point at this double (``make_server(**double.settings())``)."""
        return {"github_client_id": self.client_id, "github_client_secret": self.client_secret,
                "github_url": self.url, "github_api_url": self.api_url}

    def start(self) -> GitHubDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- test set-up -----------------------------------------------------------------------------------

    def add_user(self, login: str, *, email: str | None = None, private_email: str | None = None,
                 public_orgs: tuple[str, ...] = (), private_orgs: tuple[str, ...] = ()) -> FakeUser:
        """A GitHub account; the newest one is the one signed in on the authorize page (``signed_in_as``)."""
        user_id = 1000 + len(self.users) * 7919 + secrets.randbelow(7000)
        address = email or private_email or f"{login}@users.example"
        emails = [{"email": address, "primary": True, "verified": True,
                   "visibility": "public" if email else "private"},
                  {"email": f"{login}-old@example.org", "primary": False, "verified": True, "visibility": None}]
        user = FakeUser(user_id, login, email, emails, list(public_orgs), list(private_orgs))
        with self.lock:
            self.users[user_id] = user
            self.signed_in_as = login
        return user

    def reset(self) -> None:
        """Back to a healthy GitHub that approves sign-ins (between tests sharing one double)."""
        with self.lock:
            self.deny = self.down = False
            self.token_error = None

    def user(self, login: str) -> FakeUser:
        return next(user for user in self.users.values() if user.login.lower() == login.lower())

    def rename(self, login: str, new_login: str) -> None:
        """What a user's rename on GitHub does: same id, new login."""
        with self.lock:
            self.user(login).login = new_login
            if self.signed_in_as == login:
                self.signed_in_as = new_login

    def issue_token(self, login: str, prefix: str = "ghp_", scopes: tuple[str, ...] = ()) -> str:
        """A token for ``login``: ``ghp_``/``gho_``/``github_pat_`` + 36 characters, or ``prefix=""`` for the
        legacy form (40 hex digits)."""
        token = prefix + secrets.token_hex(18) if prefix else secrets.token_hex(20)
        with self.lock:
            self.tokens[token] = (self.user(login).id, set(scopes))
        return token

    def revoke(self, token: str) -> None:
        with self.lock:
            self.tokens.pop(token, None)

    def count(self, route: str) -> int:
        """How many requests reached ``route`` (``"GET /api/v3/user"``)."""
        with self.lock:
            return self.calls[route]

    def total_calls(self) -> int:
        with self.lock:
            return sum(self.calls.values())

    # -- what GitHub does ------------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.authorize_requests.append(query)
        if query.get("client_id") != self.client_id:
            return 404, {}, {"message": "Not Found"}
        if self.signed_in_as is None:
            return 401, {}, {"message": "nobody is signed in on the GitHub double: call add_user() first"}
        target = query["redirect_uri"]
        state = {"state": query["state"]} if "state" in query else {}
        if self.deny:
            params = {"error": "access_denied", "error_description": "The user has denied your application access.",
                      "error_uri": "https://docs.github.com/apps/troubleshooting-oauth-app-access-token-request-errors",
                      **state}
        else:
            code = secrets.token_hex(10)
            self.grants[code] = Grant(self.user(self.signed_in_as).id, query.get("redirect_uri"),
                                      query.get("code_challenge"), query.get("code_challenge_method"))
            params = {"code": code, **state}
        return 302, {"Location": f"{target}?{urlencode(params)}"}, None

    def access_token(self, form: dict[str, str]) -> dict[str, str]:
        self.token_requests.append(form)
        if self.token_error:
            error, self.token_error = self.token_error, None
            return _token_error(error, "The code passed is incorrect or expired.")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return _token_error("incorrect_client_credentials",
                                "The client_id and/or client_secret passed are incorrect.")
        grant = self.grants.pop(form.get("code", ""), None)  # a code works once
        if grant is None:
            return _token_error("bad_verification_code", "The code passed is incorrect or expired.")
        if grant.redirect_uri and form.get("redirect_uri") != grant.redirect_uri:
            return _token_error("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL.")
        if grant.challenge and not _pkce_matches(grant, form.get("code_verifier", "")):
            return _token_error("bad_verification_code", "The code_verifier does not match the code_challenge.")
        token = "gho_" + secrets.token_hex(18)
        self.tokens[token] = (grant.user_id, {"user:email"})
        return {"access_token": token, "token_type": "bearer", "scope": "user:email"}

    def api(self, path: str, query: dict[str, str], authorization: str) -> tuple[int, dict[str, str], Any]:
        scheme, _, token = authorization.partition(" ")
        owner = self.tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        if owner is None:
            return 401, {}, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
        user, scopes = self.users[owner[0]], owner[1]
        parts = [part for part in path.split("/") if part]
        if parts == ["user"]:
            return 200, {}, user.as_json()
        if parts == ["user", "emails"]:
            if "user:email" not in scopes and "user" not in scopes:
                return 404, {}, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
            return 200, {}, user.emails
        if len(parts) == 3 and parts[0] == "users" and parts[2] == "orgs":
            return self._orgs_page(parts[1], query)
        if len(parts) == 4 and parts[0] == "orgs" and parts[2] == "public_members":
            member = any(org.lower() == parts[1].lower() for org in self.user(parts[3]).public_orgs)
            return (204, {}, None) if member else (404, {}, {"message": "Not Found"})
        return 404, {}, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}

    def _orgs_page(self, login: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """Public memberships only, paginated like GitHub (``per_page``, ``page``, a ``Link`` header)."""
        try:
            orgs = self.user(login).public_orgs
        except StopIteration:
            return 404, {}, {"message": "Not Found"}
        per_page, page = min(int(query.get("per_page", 30)), 100), int(query.get("page", 1))
        chunk = orgs[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(orgs):
            headers["Link"] = f'<{self.api_url}/users/{login}/orgs?per_page={per_page}&page={page + 1}>; rel="next"'
        body = [{"login": org, "id": 5000 + index, "url": f"{self.api_url}/orgs/{org}"}
                for index, org in enumerate(chunk)]
        return 200, headers, body


def _token_error(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": description,
            "error_uri": "https://docs.github.com/apps/troubleshooting-oauth-app-access-token-request-errors"}


def _pkce_matches(grant: Grant, verifier: str) -> bool:
    if grant.method != "S256":
        return False
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant.challenge


def _handler(double: GitHubDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            with double.lock:
                double.calls[f"{method} {parts.path}"] += 1
                if double.down:
                    self._send(503, {"Content-Type": "text/html"}, b"<h1>Unicorn!</h1> GitHub is having trouble.")
                    return
                status, headers, body = self._answer(method, parts.path, dict(parse_qsl(parts.query)))
            self._send_json(status, headers, body)

        def _answer(self, method: str, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
            if method == "GET" and path == "/login/oauth/authorize":
                return double.authorize(query)
            if method == "POST" and path == "/login/oauth/access_token":
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                return 200, {"_form": "1"}, double.access_token(form)
            if method == "GET" and path.startswith("/api/v3/"):
                return double.api(path[len("/api/v3"):], query, self.headers.get("Authorization", ""))
            return 404, {}, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}

        def _send_json(self, status: int, headers: dict[str, str], body: Any) -> None:
            if headers.pop("_form", None) and "application/json" not in self.headers.get("Accept", ""):
                payload = urlencode(body).encode()  # GitHub's token endpoint answers form-encoded unless asked
                headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
            else:
                payload = b"" if body is None else json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json; charset=utf-8")
            self._send(status, headers, payload)

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

    return Handler
