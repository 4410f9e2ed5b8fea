"""Two S3 providers on loopback, each a real moto S3 server started by the suite.

Moto keeps one in-memory backend per process, so the two servers share it;
each provider gets its own bucket and keys, and its own endpoint, the way
two tenants of the product could point at R2 and B2.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from aiobotocore.session import get_session

from app.storage.s3 import S3Store


@dataclass(frozen=True)
class Provider:
    name: str
    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def store(self, bucket: str, *, part_size: int = 5 * 1024 * 1024) -> S3Store:
        return S3Store(bucket=bucket, endpoint_url=self.endpoint, region=self.region,
                       access_key_id=self.access_key_id, secret_access_key=self.secret_access_key,
                       part_size=part_size, addressing_style="path")

    def client(self):
        return get_session().create_client("s3", endpoint_url=self.endpoint, region_name=self.region,
                                           aws_access_key_id=self.access_key_id,
                                           aws_secret_access_key=self.secret_access_key)

    async def new_bucket(self) -> str:
        bucket = f"{self.name}-{uuid.uuid4().hex[:12]}"
        async with self.client() as s3:
            await s3.create_bucket(Bucket=bucket)
        return bucket


@pytest.fixture(scope="session")
def s3_providers():
    """{"r2": Provider, "b2": Provider}: two moto servers on free loopback ports."""
    from moto.server import ThreadedMotoServer

    servers, providers = [], {}
    for name in ("r2", "b2"):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        servers.append(server)
        host, port = server.get_host_and_port()
        providers[name] = Provider(name, f"http://{host}:{port}", f"{name.upper()}TESTKEY", f"{name}-test-secret")
    yield providers
    for server in servers:
        server.stop()


@pytest.fixture
async def s3_store(s3_providers):
    """A store on a new bucket of the first provider, closed afterwards."""
    provider = s3_providers["r2"]
    store = provider.store(await provider.new_bucket())
    yield store
    await store.close()


async def chunks_of(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start:start + size]
        await asyncio.sleep(0)
