"""Who may enter: ``ALLOWED_USERS`` (GitHub logins) and ``ALLOWED_ORGS`` (public organisation membership).

Both lists empty means anyone with a GitHub account; otherwise an account on either list gets in. The same
rule applies to browser sign-in and to GitHub bearer tokens (not to the operator's own ``API_TOKENS``).
"""

from __future__ import annotations

import hashlib

from .client import GitHubAPI, GitHubUser


class AccessPolicy:
    def __init__(self, users: frozenset[str], orgs: frozenset[str]) -> None:
        self.users = frozenset(user.lower() for user in users)
        self.orgs = frozenset(org.lower() for org in orgs)

    @property
    def fingerprint(self) -> str:
        """Names these rules; a session started under other rules (the operator changed them) is not honoured."""
        rules = ",".join(sorted(self.users)) + "|" + ",".join(sorted(self.orgs))
        return hashlib.sha256(rules.encode()).hexdigest()[:16]

    async def refusal(self, api: GitHubAPI, user: GitHubUser) -> str | None:
        """Why ``user`` may not enter, or None. Asks GitHub for organisations only when the login is not listed."""
        if not self.users and not self.orgs:
            return None
        if user.login.lower() in self.users:
            return None
        if self.orgs and self.orgs & await api.public_orgs(user.login):
            return None
        reasons = []
        if self.users:
            reasons.append("is not on the list of allowed users")
        if self.orgs:
            reasons.append("is not a public member of an allowed organisation (if you are a member, make your"
                           " membership public on the organisation's People page)")
        return f"the GitHub account @{user.login} may not use this service: it {' and '.join(reasons)}"
