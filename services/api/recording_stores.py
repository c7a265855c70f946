"""The stores this api reads recordings' audio from: the recorder's local directory and its S3
bucket, as the api's settings name them (shared/recording_store.py).

One per app, so all downloads share one S3 client: making a client (a botocore session loading its
service model) costs about 0.4 s, more than serving a range."""

from __future__ import annotations

from shared.recording_store import LocalStorage, S3Config, S3Storage, Storage
from shared.settings import ApiSettings


class RecordingStores:
    def __init__(self, settings: ApiSettings) -> None:
        self.local = LocalStorage(settings.recordings_dir)
        self.s3 = S3Storage(
            S3Config(
                bucket=settings.s3_bucket,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
            )
        )

    def find(self, location: str) -> tuple[Storage, str] | None:
        """The store that holds ``location`` and its key there; None when it is no store of ours."""
        for store in (self.local, self.s3):
            key = store.key_of(location)
            if key is not None:
                return store, key
        return None

    async def close(self) -> None:
        await self.s3.close()


__all__ = ["RecordingStores"]
