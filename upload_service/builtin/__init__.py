"""Default plugins, loaded through the ``upload_service`` entry points like any third-party plugin."""
