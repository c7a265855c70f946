"""The store this recorder writes finished recordings to, from its settings (the classes live in
shared/recording_store.py: the api reads the same locations for downloads)."""

from __future__ import annotations

from shared.recording_store import (
    LocalStorage,
    S3Config,
    S3Storage,
    Storage,
    StorageError,
    object_key,
)
from shared.settings import RecorderSettings


def storage_for(settings: RecorderSettings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(
            S3Config(
                bucket=settings.s3_bucket,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
            )
        )
    if settings.storage == "local":
        return LocalStorage(settings.recordings_dir)
    raise ValueError(f"storage {settings.storage!r} is not local or s3")


__all__ = ["LocalStorage", "S3Storage", "Storage", "StorageError", "object_key", "storage_for"]
