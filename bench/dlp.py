"""DLP scanner speed on mixed text (issue 6's target: at least 50 MB/s).

It writes --mb megabytes (default 100) of mixed text to a temporary file and times
app.dlp.scan_path over it --repeat times (the file in the page cache, as an upload
just received is); the median is reported, with every run's seconds.

The text is lines of prose (45 %, with look-alike words such as "passing"), CSV
rows (30 %: ids, amounts, dates, phone numbers, e-mail addresses, timestamps),
JSON log lines (20 %: ids, 13-digit epoch milliseconds, hex request ids) and
identifier lines (5 %): nine in ten of those
are look-alikes that must not be reported (16 digits failing Luhn, Luhn-valid
numbers with no issuer range, PESELs with a valid checksum and an impossible date,
IBANs with a wrong mod 97, an MRZ with a wrong check digit, "passport" followed by
words), one in ten is a real identifier of each kind. Unique content is
generated for --unique megabytes (default 10) and repeated to the size, which
changes nothing for the scanner and keeps generation short. The count of each
kind found is printed, so a drop in speed from a change in what is found shows.

"upload_encrypt" is bench/evidence_upload.py's encrypt_store_figures(): a
--upload-mb MiB file (default 50) encrypted with a data key and put into the
local folder store, --repeat times.

No database is needed. Run from the repository root, with the project installed:

    python bench/dlp.py [--mb 100] [--unique 10] [--repeat 3] [--seed 6] [--upload-mb 50]

The figures are printed as one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path
from time import perf_counter, process_time

from stdnum import iban, luhn
from stdnum.pl import pesel

from _scratch import emit, log
from app.dlp import scan_path
from app.dlp.identifiers import mrz_check_digit

WORDS = ("the risk exception was approved by security team after review of compensating controls for legacy "
         "system and its owner agreed to a time boxed remediation plan within ninety days evidence attached "
         "Kraków Zürich données número passing compass past").split()


class MixedText:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def digits(self, n: int) -> str:
        return "".join(self.rnd.choice("0123456789") for _ in range(n))

    def prose(self) -> str:
        words = [self.rnd.choice(WORDS) for _ in range(self.rnd.randint(8, 24))]
        return " ".join(words).capitalize() + ".\n"

    def csv_row(self) -> str:
        r = self.rnd
        return (f"{r.randint(1, 10**7)},{r.choice(WORDS)},{r.randint(0, 99999)}.{r.randint(0, 99):02d},"
                f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d},+48 {r.randint(100, 999)} {r.randint(100, 999)} "
                f"{r.randint(100, 999)},{r.choice(WORDS)}@example.com,2026-11-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
                f"{r.randint(0, 59):02d}:00Z\n")

    def json_line(self) -> str:
        r = self.rnd
        return json.dumps({"id": r.randint(1, 10**9), "ts": 1_700_000_000_000 + r.randint(0, 10**10),
                           "level": r.choice(("info", "warn")), "msg": " ".join(r.choices(WORDS, k=6)),
                           "request": f"{r.getrandbits(64):016x}", "ms": round(r.random() * 900, 3)}) + "\n"

    def look_alike(self) -> str:
        r = self.rnd
        kind = r.randrange(7)
        if kind == 0:  # Visa prefix, Luhn fails
            body = "4" + self.digits(14)
            return f"ref {body}{(int(luhn.calc_check_digit(body)) + 1) % 10}\n"
        if kind == 1:  # Luhn-valid, no issuer range
            body = r.choice("1789") + self.digits(14)
            return f"order {body}{luhn.calc_check_digit(body)} shipped\n"
        if kind == 2:  # PESEL checksum right, month 13 impossible
            body = f"{r.randint(0, 99):02d}13{r.randint(1, 28):02d}{self.digits(4)}"
            return f"id {body}{pesel.calc_check_digit(body)}\n"
        if kind == 3:  # IBAN, mod 97 wrong
            bban = self.digits(18)
            good = int(iban.calc_check_digits("DE00" + bban))
            return f"konto DE{(good + 1) % 97 or 2:02d}{bban}\n"
        if kind == 4:  # grouped digits, Luhn fails
            body = "5" + r.choice("12345") + self.digits(13)
            number = body + str((int(luhn.calc_check_digit(body)) + 3) % 10)
            return "card " + " ".join(number[i:i + 4] for i in range(0, 16, 4)) + "\n"
        if kind == 5:  # MRZ, composite check digit wrong
            return self.mrz(valid=False)
        return f"Passport office hours {r.randint(8, 10)} to {r.randint(15, 18)}, bring {r.randint(1, 3)} photos\n"

    def mrz(self, *, valid: bool) -> str:
        number = "X" + self.digits(8)
        birth, expiry = "850712", "320101"
        line2 = (number + mrz_check_digit(number) + "POL" + birth + mrz_check_digit(birth) + "F"
                 + expiry + mrz_check_digit(expiry) + "<" * 14 + "<")
        composite = mrz_check_digit(line2[0:10] + line2[13:20] + line2[21:43])
        line2 += composite if valid else str((int(composite) + 1) % 10)
        return "P<POLKOWALSKA<<ANNA" + "<" * 25 + "\n" + line2 + "\n"

    def real(self) -> str:
        r = self.rnd
        kind = r.randrange(5)
        if kind == 0:
            body = "4" + self.digits(14)
            return f"paid with {body}{luhn.calc_check_digit(body)}\n"
        if kind == 1:
            body = f"{r.randint(50, 99):02d}{r.randint(1, 12):02d}{r.randint(1, 28):02d}{self.digits(4)}"
            return f"PESEL {body}{pesel.calc_check_digit(body)}\n"
        if kind == 2:
            bban = self.digits(18)
            return f"IBAN DE{iban.calc_check_digits('DE00' + bban)}{bban}\n"
        if kind == 3:
            return f"passport no. EA{self.digits(7)}\n"
        return self.mrz(valid=True)

    def line(self) -> str:
        x = self.rnd.random()
        if x < 0.45:
            return self.prose()
        if x < 0.75:
            return self.csv_row()
        if x < 0.95:
            return self.json_line()
        return self.real() if self.rnd.random() < 0.1 else self.look_alike()

    def block(self, size: int) -> bytes:
        lines, total = [], 0
        while total < size:
            line = self.line().encode()
            lines.append(line)
            total += len(line)
        return b"".join(lines)


def write_corpus(path: Path, mb: int, unique_mb: int, seed: int) -> int:
    block = MixedText(seed).block(unique_mb * 1_000_000)
    written = 0
    with open(path, "wb") as f:
        while written < mb * 1_000_000:
            piece = block[:mb * 1_000_000 - written]
            f.write(piece)
            written += len(piece)
    return written


def dlp_scan_figures(path: Path, size: int, repeat: int) -> dict:
    seconds, cpu_seconds, result = [], [], None
    for run in range(repeat):
        start, cpu_start = perf_counter(), process_time()
        result = scan_path(path)
        seconds.append(perf_counter() - start)
        cpu_seconds.append(process_time() - cpu_start)
        log(f"scan {run + 1}/{repeat}: {seconds[-1]:.2f} s, {size / seconds[-1] / 1e6:.1f} MB/s")
    median = statistics.median(seconds)
    return {
        "bytes": size,
        "median_s": round(median, 3),
        "runs_s": [round(s, 3) for s in seconds],
        "mb_per_s": round(size / median / 1e6, 1),
        # The scan is one thread on one core: its CPU time says what a busy machine's wall time hides.
        "cpu_mb_per_s": round(size / statistics.median(cpu_seconds) / 1e6, 1),
        "target_mb_per_s": 50,
        "file_type": result.file_type,
        "found": {f.kind: f.count for f in result.findings},
    }


def upload_encrypt_figures(mb: int, repeat: int) -> dict:
    """Upload + encrypt MB/s (issue 6): bench/evidence_upload.py's encrypt-and-store of an `mb` MiB file
    (no HTTP, no database, no scan; the whole upload over HTTP is that script's own figure)."""
    from evidence_upload import encrypt_store_figures

    return encrypt_store_figures(mb=mb, repeat=repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--unique", type=int, default=10, help="megabytes of unique text, repeated to --mb")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--upload-mb", type=int, default=50, help="file size for the upload + encrypt figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.txt"
        start = perf_counter()
        size = write_corpus(path, args.mb, min(args.unique, args.mb), args.seed)
        log(f"wrote {size / 1e6:.0f} MB of mixed text in {perf_counter() - start:.1f} s")
        scan = dlp_scan_figures(path, size, args.repeat)
    log(f"upload + encrypt of {args.upload_mb} MiB ...")
    emit({"dlp_scan": scan, "upload_encrypt": upload_encrypt_figures(args.upload_mb, args.repeat)})


if __name__ == "__main__":
    main()
