"""Key-encryption keys: what wraps each tenant's data key. Vault/OpenBao transit, or a local key file.

Both answer the same few calls, all synchronous (hvac is): `wrap`, `unwrap`,
`rewrap` (to the newest version), `rotate`, `version_of` a wrapped key. The
async callers in app.crypto run them with asyncio.to_thread. A wrapped key
says which version wrapped it, so old versions stay readable after a rotation
until everything is rewrapped.

Neither logs or repeats key material or the Vault token; errors name the
operation, the key and the server's reason.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import threading
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.config import Settings

log = logging.getLogger(__name__)

VAULT_TRANSIT = "vault-transit"
LOCAL_FILE = "local-file"
KEY_FILE_NAME = "kek.keys"


class KekError(RuntimeError):
    """The key-encryption key could not do what was asked: unreachable, refused, or the wrapped key is not its own."""


class KekUnavailable(KekError):
    """Vault could not be reached, or is sealed: a passing outage (a request meets it as a 503), not a refusal."""


class KeyEncryptionKey(ABC):
    name: str

    @abstractmethod
    def wrap(self, key: bytes) -> bytes:
        """`key` encrypted under the newest version."""

    @abstractmethod
    def unwrap(self, wrapped: bytes) -> bytes:
        """The key; KekError if `wrapped` was not made by this key-encryption key or was changed."""

    def rewrap(self, wrapped: bytes) -> bytes:
        """`wrapped` re-encrypted under the newest version."""
        return self.wrap(self.unwrap(wrapped))

    @abstractmethod
    def rotate(self) -> int:
        """Make a new version, used for every wrap from now on; its number."""

    @abstractmethod
    def version_of(self, wrapped: bytes) -> int:
        """The version that wrapped `wrapped`."""

    def forget_before(self, version: int) -> bool:
        """Drop versions older than `version` (nothing refers to them any more); False where that is not ours to do."""
        return False


class VaultTransit(KeyEncryptionKey):
    """A named key of Vault's (or OpenBao's) transit engine: the key never leaves Vault, rewrap never shows plaintext.

    The token needs `update` on transit/encrypt/<key> and transit/decrypt/<key>;
    rotation also needs transit/keys/<key>/rotate, transit/rewrap/<key> and
    `read` on transit/keys/<key> (and `update` on it, to make the key when keys
    first move in from the local file).
    """

    name = VAULT_TRANSIT
    _WRAPPED = re.compile(rb"^vault:v(\d+):[A-Za-z0-9+/=]+$")

    def __init__(self, addr: str, token: str, key_name: str, *, mount: str = "transit", verify: str | bool = True):
        self.addr, self.key_name, self.mount = addr, key_name, mount
        self._token, self._verify = token, verify
        self._local = threading.local()  # a requests session per thread: calls come from asyncio.to_thread

    def __repr__(self) -> str:
        return f"VaultTransit(addr={self.addr!r}, key={self.key_name!r}, mount={self.mount!r})"

    def _transit(self):
        client = getattr(self._local, "client", None)
        if client is None:
            import hvac

            client = hvac.Client(url=self.addr, token=self._token, verify=self._verify, timeout=10)
            self._local.client = client
        return client.secrets.transit

    def _call(self, what: str, call, *, missing_ok: bool = False):
        import hvac.exceptions
        import requests

        try:
            return call(self._transit())
        except hvac.exceptions.InvalidPath:
            if missing_ok:
                return None
            raise KekError(f"Vault transit {what}: no key {self.key_name!r} at {self.addr}") from None
        except hvac.exceptions.VaultDown:
            raise KekUnavailable(f"Vault at {self.addr} is sealed or down for transit {what}") from None
        except hvac.exceptions.VaultError as exc:
            reason = "; ".join(exc.errors) if getattr(exc, "errors", None) else type(exc).__name__
            raise KekError(f"Vault transit {what} with key {self.key_name!r} at {self.addr} failed: {reason}") from None
        except requests.RequestException as exc:
            raise KekUnavailable(f"Vault at {self.addr} could not be reached for transit {what}: "
                           f"{type(exc).__name__}") from None

    def wrap(self, key: bytes) -> bytes:
        answer = self._call("encrypt", lambda t: t.encrypt_data(
            self.key_name, plaintext=base64.b64encode(key).decode(), mount_point=self.mount))
        return answer["data"]["ciphertext"].encode("ascii")

    def unwrap(self, wrapped: bytes) -> bytes:
        answer = self._call("decrypt", lambda t: t.decrypt_data(
            self.key_name, ciphertext=wrapped.decode("ascii"), mount_point=self.mount))
        return base64.b64decode(answer["data"]["plaintext"])

    def rewrap(self, wrapped: bytes) -> bytes:
        answer = self._call("rewrap", lambda t: t.rewrap_data(
            self.key_name, ciphertext=wrapped.decode("ascii"), mount_point=self.mount))
        return answer["data"]["ciphertext"].encode("ascii")

    def rotate(self) -> int:
        """A new version; a key not made yet (moving from the local key file) is made, at version 1."""
        if self._call("read", lambda t: t.read_key(self.key_name, mount_point=self.mount), missing_ok=True) is None:
            self._call("create", lambda t: t.create_key(self.key_name, key_type="aes256-gcm96", mount_point=self.mount))
        else:
            self._call("rotate", lambda t: t.rotate_key(self.key_name, mount_point=self.mount))
        answer = self._call("read", lambda t: t.read_key(self.key_name, mount_point=self.mount))
        return answer["data"]["latest_version"]

    def version_of(self, wrapped: bytes) -> int:
        match = self._WRAPPED.match(wrapped)
        if not match:
            raise KekError("not a Vault transit ciphertext")
        return int(match.group(1))


class LocalKeyFile(KeyEncryptionKey):
    """Key-encryption keys in a file of the data dir (mode 0600, made on first use): the embedded default.

    Each line is one version, `v<N> <base64 of 32 bytes>`. A wrapped key is
    `local:v<N>:` + nonce + AES-256-GCM(version N, key, aad naming version N).
    The file is read again whenever it changes, so a rotation made by the
    command line reaches a running server. Not for production: the key sits on
    the same disk as the data it protects.
    """

    name = LOCAL_FILE
    _LINE = re.compile(r"^v(\d+) ([A-Za-z0-9+/]{43}=)$")
    _WRAPPED = re.compile(rb"^local:v(\d+):", re.DOTALL)

    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._versions: dict[int, bytes] = {}
        self._lock = threading.RLock()  # rotate reads, then writes, as one step

    def __repr__(self) -> str:
        return f"LocalKeyFile({str(self.path)!r})"

    def _read(self, *, create: bool) -> dict[int, bytes]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                if not create:
                    raise KekError(f"the key file {self.path} is missing: no data key can be unwrapped") from None
                self._write({1: secrets.token_bytes(32)}, replace=False)
                stat = self.path.stat()
            if stat.st_mode & 0o077:
                raise KekError(f"the key file {self.path} is open to other users (mode {stat.st_mode & 0o777:o});"
                               " it must be 0600")
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if seen != self._seen:
                versions = {}
                for line in self.path.read_text(encoding="ascii").splitlines():
                    if line.startswith("#") or not line.strip():
                        continue
                    match = self._LINE.match(line)
                    if not match:
                        raise KekError(f"the key file {self.path} has a line that is not `v<N> <base64 key>`")
                    versions[int(match.group(1))] = base64.b64decode(match.group(2))
                if not versions:
                    raise KekError(f"the key file {self.path} holds no key")
                self._versions, self._seen = versions, seen
            return self._versions

    def _write(self, versions: dict[int, bytes], *, replace: bool) -> None:
        """Write all versions to a new file, then put it in place atomically (link when it must not exist yet)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}")
        text = "# Exceptao key-encryption keys. Never copy or commit this file; losing it loses every file.\n"
        text += "".join(f"v{n} {base64.b64encode(k).decode()}\n" for n, k in sorted(versions.items()))
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(temporary, self.path)
            else:
                try:
                    os.link(temporary, self.path)
                except FileExistsError:
                    pass  # another process made it a moment ago: theirs stands
        finally:
            temporary.unlink(missing_ok=True)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @staticmethod
    def _aad(version: int) -> bytes:
        return b"exceptao/kek/local/v%d" % version

    def wrap(self, key: bytes) -> bytes:
        versions = self._read(create=True)
        version = max(versions)
        nonce = secrets.token_bytes(12)
        return b"local:v%d:" % version + nonce + AESGCM(versions[version]).encrypt(nonce, key, self._aad(version))

    def unwrap(self, wrapped: bytes) -> bytes:
        version = self.version_of(wrapped)
        kek = self._read(create=False).get(version)
        if kek is None:
            raise KekError(f"the key file {self.path} no longer holds version {version}, which wrapped this key")
        body = wrapped[len(b"local:v%d:" % version):]
        try:
            return AESGCM(kek).decrypt(body[:12], body[12:], self._aad(version))
        except InvalidTag:
            raise KekError(f"a data key wrapped under key-file version {version} failed authentication") from None

    def rotate(self) -> int:
        with self._lock:
            versions = dict(self._read(create=True))
            version = max(versions) + 1
            versions[version] = secrets.token_bytes(32)
            self._write(versions, replace=True)
        return version

    def version_of(self, wrapped: bytes) -> int:
        match = self._WRAPPED.match(wrapped)
        if not match:
            raise KekError("not a key wrapped by the local key file")
        return int(match.group(1))

    def forget_before(self, version: int) -> bool:
        with self._lock:
            versions = self._read(create=False)
            kept = {n: k for n, k in versions.items() if n >= version}
            if kept and len(kept) < len(versions):
                self._write(kept, replace=True)
        return True


def key_encryption_key(settings: Settings) -> KeyEncryptionKey:
    """The configured key-encryption key: Vault transit when a Vault address is set, else the local key file."""
    if settings.vault_addr:
        return _vault(settings.vault_addr, settings.vault_token or "", settings.vault_transit_key,
                      settings.vault_transit_mount, settings.vault_cacert or True)
    return _local(settings.data_dir / KEY_FILE_NAME, bool(settings.database_url))


def key_encryption_key_named(settings: Settings, name: str) -> KeyEncryptionKey:
    """The provider that wrapped a stored key, which may differ from the configured one while moving to Vault."""
    if name == VAULT_TRANSIT and settings.vault_addr:
        return key_encryption_key(settings)
    if name == LOCAL_FILE:
        return _local(settings.data_dir / KEY_FILE_NAME, bool(settings.database_url))
    raise KekError(f"a data key is wrapped by {name!r}, which this instance is not configured for"
                   " (set EXCEPTAO_VAULT_ADDR and its token)")


# One provider per configuration, so the local file is parsed once per change and Vault sessions are reused.
@lru_cache(maxsize=8)
def _vault(addr: str, token: str, key_name: str, mount: str, verify: str | bool) -> VaultTransit:
    if not token:
        raise KekError("EXCEPTAO_VAULT_ADDR is set but no token is: set EXCEPTAO_VAULT_TOKEN (or VAULT_TOKEN)")
    host = urlsplit(addr).hostname or ""
    if addr.startswith("http://") and host not in ("localhost", "::1") and not host.startswith("127."):
        log.warning("Vault at %s is reached over plain HTTP: the token and every data key cross the network in clear;"
                    " use https://", addr)
    return VaultTransit(addr, token, key_name, mount=mount, verify=verify)


@lru_cache(maxsize=8)
def _local(path: Path, external_database: bool) -> LocalKeyFile:
    if external_database:
        log.warning("data keys are wrapped by the local key file %s; in production set EXCEPTAO_VAULT_ADDR so the "
                    "key-encryption key lives in Vault, not on this disk", path)
    return LocalKeyFile(path)
