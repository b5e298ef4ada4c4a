"""tus 1.0.0 resumable uploads at ``<prefix>/api/tus/``, a default plugin (entry point ``tus``).

Modules: ``protocol`` (headers and their parsing), ``locking`` (one writer per upload, release on request),
``state`` (what the protocol keeps per upload), ``service`` (creating, appending, finishing), ``routes``
(the HTTP side), ``plugin`` (hooks). Uploads in progress live in ``storage.resumable``
(``upload_service.storage.ResumableStorage``).
"""
