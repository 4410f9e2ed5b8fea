from __future__ import annotations

from pathlib import Path

import pytest

from app.dlp import ScanResult, scan_path


@pytest.fixture
def scan(tmp_path):
    """Write bytes to a file (named as given, default evidence.bin) and scan it."""
    def run(data: bytes, name: str = "evidence.bin", **kwargs) -> ScanResult:
        path = tmp_path / name
        path.write_bytes(data)
        return scan_path(path, **kwargs)
    return run


def counts(result: ScanResult) -> dict[str, int]:
    return {f.kind: f.count for f in result.findings}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path
