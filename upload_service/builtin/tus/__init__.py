"""tus 1.0.0 resumable uploads at ``<prefix>/api/tus/``, a default plugin (entry point ``tus``).

It is built on the public plugin API only, as a third-party upload protocol would be. Modules: ``protocol``
(headers and their parsing), ``state`` (what the protocol keeps per upload), ``operations`` (creating, appending,
finishing through the ingest pipeline), ``concatenation`` (a final upload taking its partials), ``release`` (a
PATCH asked to let go keeps what arrived), ``routes`` (the HTTP side), ``plugin`` (hooks). Uploads in progress
live in ``storage.resumable`` (``upload_service.storage.ResumableStorage``).
"""
