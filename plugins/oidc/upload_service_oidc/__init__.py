"""OpenID Connect sign-in for upload-service (the ``oidc`` plugin); the hooks are in ``upload_service_oidc.plugin``."""
