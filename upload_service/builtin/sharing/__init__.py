"""Sharing: share links and file requests (the ``sharing`` default plugin; see ``plugin.py``)."""
