"""S3 storage backend for upload-service, installed with ``pip install upload-service-s3``."""
