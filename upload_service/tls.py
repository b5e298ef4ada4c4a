"""One TLS context per process for the service's outgoing HTTPS calls (GitHub, OpenID Providers, webhooks).

An ``httpx2`` client made without ``verify=`` builds a TLS context of its own, which loads the CA store: about
27 ms of CPU, paid per GitHub token check, per sign-in and per OIDC discovery when each makes a client. Clients
given ``verify=tls_context()`` share one, made on first use. It is the context such a client would have made
itself: the certificates are checked against the system's CA store, or against ``SSL_CERT_FILE`` or
``SSL_CERT_DIR`` when set (how an operator trusts a private CA); a change of either variable gets a context of
its own, while a changed CA file is read again only by a new process.
"""

from __future__ import annotations

import functools
import os
import ssl

import httpx2


def tls_context() -> ssl.SSLContext:
    """The shared context for ``httpx2.AsyncClient(verify=tls_context())`` (HTTP/1.1 clients: a connection sets
    the context's ALPN protocols, so an HTTP/2 client needs one of its own)."""
    return _context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """One per CA setting; httpx2 reads the same variables, so the context is the one a client makes."""
    return httpx2.create_ssl_context()
