"""DLP scan of an evidence file: payment card numbers, PESELs, IBANs and passport numbers.

    result = scan_path(path)            # synchronous, CPU-bound: asyncio.to_thread(scan_path, path)
    result.file_type                    # "text", "pdf", "docx", "xlsx", "pptx"; "binary"/"zip" when unsupported
    result.findings                     # [Finding(kind="pan", count=2, sample="4111 •••• •••• 1111"), ...]
    result.unscannable                  # None, or why the file could not be read completely ("zip bomb", ...)

Nothing found by the scan leaves this package unmasked, and nothing is logged. A
file that cannot be read completely is unscannable (its findings so far are kept);
the caller's policy decides what that means. An unopenable path raises OSError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.dlp.detect import KINDS, Finding, Kind, Scanner
from app.dlp.extract import extract
from app.dlp.limits import Limits, Unscannable

__all__ = ["KINDS", "Finding", "Kind", "Limits", "ScanResult", "scan_path"]


@dataclass(frozen=True)
class ScanResult:
    file_type: str
    findings: list[Finding]
    unscannable: str | None = None

    @property
    def clean(self) -> bool:
        """Read completely and nothing found."""
        return not self.findings and self.unscannable is None


def scan_path(path: Path, *, limits: Limits = Limits()) -> ScanResult:
    """Scan one file; the type is read from its content, never from its name."""
    scanner = Scanner()
    try:
        file_type = extract(Path(path), scanner, limits)
    except Unscannable as refused:
        return ScanResult(refused.file_type or "binary", scanner.finish(), refused.reason)
    return ScanResult(file_type, scanner.finish())
