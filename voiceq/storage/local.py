"""Embedded blob storage: a folder on the local disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from ..errors import BlobNotFound, StorageUnavailable
from .base import check_key, check_prefix


class LocalBlobStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"storage folder {self.root} is missing or not writable")

    def put(self, key: str, data: bytes | BinaryIO, *, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write to a temporary file and rename: a reader never sees half a blob.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    out.write(data)
                else:
                    shutil.copyfileobj(data, out)
            os.replace(tmp, path)
        except OSError as err:
            raise StorageUnavailable(f"cannot write {key}: {err}") from err

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as err:
            raise BlobNotFound(key) from err
        except OSError as err:
            raise StorageUnavailable(f"cannot read {key}: {err}") from err

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as err:
            raise StorageUnavailable(f"cannot delete {key}: {err}") from err

    def list_prefix(self, prefix: str) -> list[str]:
        folder = check_prefix(prefix).split("/", 1)[0]
        base = self.root / folder
        if not base.is_dir():
            return []
        try:
            found = [p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file()]
        except OSError as err:
            raise StorageUnavailable(f"cannot list {prefix}: {err}") from err
        return sorted(k for k in found if k.startswith(prefix) and not k.rsplit("/", 1)[-1].startswith(".tmp-"))

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_prefix(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def presigned_url(self, key: str, *, expires_s: int = 3600) -> str | None:
        return None
