"""Redis locker for upload-service, installed with ``pip install upload-service-redis``."""
