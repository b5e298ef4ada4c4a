"""The JSON API routes, added to the service's blueprint under ``/api``."""
