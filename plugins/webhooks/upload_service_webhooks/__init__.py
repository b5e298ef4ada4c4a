"""Webhooks for upload-service: Standard Webhooks events delivered from an outbox kept in the service's storage."""
