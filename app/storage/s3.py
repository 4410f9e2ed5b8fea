"""An S3-compatible store through aiobotocore: AWS S3, Cloudflare R2, Backblaze B2, MinIO.

Large objects go up as a multipart upload of fixed-size parts, so memory
holds about one part whatever the object's size (R2 wants every part but
the last the same size; S3 and B2 want at least 5 MiB). An upload that fails
or is cancelled is aborted, so no half object is left billed in the bucket.

Request checksums are computed only where the API requires them: the
flexible checksums botocore sends by default are not understood by every
S3-compatible store, and the content is authenticated by its own encryption
(AES-GCM per chunk) and SHA-256 anyway.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, AsyncIterable, AsyncIterator

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from app.storage import ObjectMissing, checked_name

if TYPE_CHECKING:
    from app.config import Settings

MIN_PART = 5 * 1024 * 1024
READ_CHUNK = 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Store:
    def __init__(self, *, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1",
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 part_size: int = 8 * 1024 * 1024, addressing_style: str = "auto"):
        if part_size < MIN_PART:
            raise ValueError(f"S3 parts are at least {MIN_PART} bytes")
        self.bucket = bucket
        self.part_size = part_size
        self._client_args = {
            "endpoint_url": endpoint_url, "region_name": region,
            # None leaves botocore's own chain (AWS_* variables, an instance role).
            "aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key,
            "config": AioConfig(signature_version="s3v4", s3={"addressing_style": addressing_style},
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required",
                                retries={"mode": "standard", "max_attempts": 3}),
        }
        self._stack: AsyncExitStack | None = None
        self._client = None
        self._opening = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "S3Store":
        return cls(bucket=settings.s3_bucket, endpoint_url=settings.s3_endpoint, region=settings.s3_region,
                   access_key_id=settings.s3_access_key_id, secret_access_key=settings.s3_secret_access_key,
                   part_size=settings.s3_part_mb * 1024 * 1024, addressing_style=settings.s3_addressing_style)

    async def client(self):
        """One client per store, opened on first use (its connection pool is reused)."""
        async with self._opening:
            if self._client is None:
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(get_session().create_client("s3", **self._client_args))
                self._stack = stack
        return self._client

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    async def put(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        key = checked_name(name)
        s3 = await self.client()
        buffer = bytearray()
        size = 0
        upload_id = None
        parts = []
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                while len(buffer) >= self.part_size:
                    if upload_id is None:
                        created = await s3.create_multipart_upload(Bucket=self.bucket, Key=key)
                        upload_id = created["UploadId"]
                    part = bytes(buffer[:self.part_size])
                    del buffer[:self.part_size]
                    answer = await s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  PartNumber=len(parts) + 1, Body=part)
                    parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
            if upload_id is None:
                await s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
                return size
            if buffer:
                answer = await s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              PartNumber=len(parts) + 1, Body=bytes(buffer))
                parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
            await s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": parts})
            upload_id = None
            return size
        finally:
            if upload_id is not None:
                # Shielded: a cancelled request still aborts its upload.
                await asyncio.shield(self._abort(key, upload_id))

    async def _abort(self, key: str, upload_id: str) -> None:
        s3 = await self.client()
        await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def get(self, name: str) -> AsyncIterator[bytes]:
        key = checked_name(name)
        s3 = await self.client()
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _code(error) in _MISSING:
                raise ObjectMissing(name) from None
            raise
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk

    async def delete(self, name: str) -> None:
        s3 = await self.client()
        await s3.delete_object(Bucket=self.bucket, Key=checked_name(name))

    async def exists(self, name: str) -> bool:
        s3 = await self.client()
        try:
            await s3.head_object(Bucket=self.bucket, Key=checked_name(name))
        except ClientError as error:
            if _code(error) in _MISSING:
                return False
            raise
        return True


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
