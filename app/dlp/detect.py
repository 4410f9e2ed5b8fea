"""Finding card numbers, PESELs, IBANs and passport numbers in a stream of text.

`Scanner` takes ASCII-compatible bytes (UTF-8, Windows-1252, Latin-1: every
identifier we look for is ASCII, and a multi-byte UTF-8 character never holds an
ASCII byte) in pieces of any size and scans them a window at a time, so memory
stays flat however large the file.

Speed comes from never running a general regex over every byte. Each window is
mapped once with `bytes.translate` into a shape (digits become 0, separators s,
capitals A), and literal searches on the shape find the few places worth a look:
`00000000000` (eleven digits in a row) and `0000s0000` (grouped digits) for cards
and PESELs, `AA00` for IBANs, `pas` in the lower-cased text for passport keywords,
`<<` for machine-readable zones. Only those candidates are cut out and checked
(issuer range, then Luhn; PESEL checksum and birth date; country length and mod 97).
Digits are ASCII digits: numbers written in other scripts' digits are not read.

Windows overlap: a detector defers a candidate that could continue past the end
of the window, and the next window starts before it, so a number split across two
reads is found once, and a run of digits cut by the window's end is never judged
on its first half.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from app.dlp import identifiers as ids

Kind = Literal["pan", "pesel", "iban", "passport"]
KINDS: tuple[Kind, ...] = ("pan", "pesel", "iban", "passport")


@dataclass(frozen=True)
class Finding:
    """How often one kind of identifier occurs in a file, and one masked example (never a value)."""

    kind: Kind
    count: int
    sample: str


WINDOW = 1 << 20   # bytes scanned at a time
TAIL = 256         # longer than any bounded candidate (MRZ 2x44, IBAN, keyword + number)
LEFT = 32          # context kept before a resumed position, for boundary checks
MAX_RUN = 4096     # a run of digits and separators longer than this is looked at in pieces

_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset(b"0123456789")
_MRZ_CHARS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ<")


def _table(classes: dict[bytes, bytes]) -> bytes:
    table = bytearray(b"." * 256)
    for members, shape in classes.items():
        for byte in members:
            table[byte] = shape[0]
    return bytes(table)


# One shape for every prefilter: digits 0, separators s, capitals A, other letters a, the rest a dot.
_SHAPE = _table({b"0123456789": b"0", b" -": b"s", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ": b"A",
                 b"abcdefghijklmnopqrstuvwxyz_": b"a"})
# A hit runs on to the end of its digit groups (a trailing separator is not part of it).
_ELEVEN_DIGITS = re.compile(rb"000000000000*(?:s0+)*")
_GROUPED_DIGITS = re.compile(rb"0000s00000*(?:s0+)*")
_CARD_FIRST_DIGITS = frozenset(b"234569")  # no issuer range starts with 0, 1, 7 or 8
_GROUP = re.compile(rb"[0-9]+")

_IBAN_START = re.compile(rb"AA00")
_IBAN = re.compile(
    rb"([A-Z]{2}[0-9]{2})(?:([A-Z0-9]{11,30})(?![A-Za-z0-9])"
    rb"|((?: [A-Z0-9]{4}(?![A-Za-z0-9])){2,8}(?: [A-Z0-9]{1,3}(?![A-Za-z0-9]))?))")

# TD3: line 1 "P" + type + issuing state + name (44), line 2 as identifiers.is_td3_line2 reads it.
_MRZ = re.compile(
    rb"P[A-Z<][A-Z<]{42}\s{0,3}"
    rb"([A-Z0-9<]{9}[0-9][A-Z<]{3}[0-9]{7}[MFX<][0-9]{7}[A-Z0-9<]{14}[0-9<][0-9])(?![A-Z0-9<])")

# Every keyword holds "pas": passport, paszport, passeport, pasaporte, passaporto, Reisepass.
_KEYWORD = re.compile(rb"pas(?:sport|zport|seport|aporte|saporto|s(?<=reisepass))")
_KEYWORD_REACH = 64
_DIGIT = re.compile(rb"[0-9]")
_TOKEN = re.compile(rb"[^\s:#.,;()\[\]{}\"'=|/\\*_-]+")
# Words between a keyword and its number: "passport no.", "Reisepass-Nr.", "numer paszportu", "passports".
_FILLERS = frozenset(
    "no nr num number numbers numer nummer numero número numéro núm n° nº no° id is was of the holder "
    "s u y em es e ausweis".split())
_SPACES = ((b"\xc2\xa0", b" "), (b"\xe2\x80\xaf", b" "), (b"\xe2\x80\x89", b" "), (b"\xe2\x80\x87", b" "),
           (b"\xe2\x80\x91", b"-"), (b"\xe2\x80\x93", b"-"))


class Scanner:
    """Feed text with `feed`, then `finish` for the findings. Holds no value it found, only masks."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._pending = 0
        self._held = b""        # an incomplete UTF-8 space at the end of the last piece
        self._buf = b""
        self._base = 0          # absolute offset of _buf[0]
        self._pos = 0           # absolute: bounded detectors resume here
        self._digits_pos = 0    # absolute: the digit-run detector resumes here (it may defer further back)
        self._digits_done = 0   # absolute: end of the last digit run judged
        self._ibans: list[tuple[int, int]] = []  # absolute spans of IBANs, not also read as cards
        self._counts: dict[str, int] = {}
        self._samples: dict[str, str] = {}
        self._sample_at: dict[str, int] = {}

    def feed(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        if data[-1:] in (b"\xc2", b"\xe2"):
            data, self._held = data[:-1], data[-1:]
        elif data[-2:] == b"\xe2\x80":
            data, self._held = data[:-2], data[-2:]
        if (b"\xc2" in data or b"\xe2" in data) and (b"\xc2\xa0" in data or b"\xe2\x80" in data):
            # Non-breaking and thin spaces group digits in PDFs and Word files: make them plain spaces.
            for special, plain in _SPACES:
                data = data.replace(special, plain)
        self._pieces.append(data)
        self._pending += len(data)
        if self._pending >= WINDOW:
            self._scan(final=False)

    def finish(self) -> list[Finding]:
        if self._held:
            self._pieces.append(self._held)
            self._held = b""
        self._scan(final=True)
        return [Finding(kind, self._counts[kind], self._samples[kind]) for kind in KINDS if kind in self._counts]

    def _found(self, kind: Kind, masked: str, at: int) -> None:
        """Count one; the sample is the first in the text (whatever order the detectors ran in)."""
        self._counts[kind] = self._counts.get(kind, 0) + 1
        at += self._base
        if at < self._sample_at.get(kind, at + 1):
            self._samples[kind], self._sample_at[kind] = masked, at

    def _scan(self, *, final: bool) -> None:
        window = self._buf + b"".join(self._pieces)
        self._pieces, self._pending = [], 0
        base, n = self._base, len(window)
        limit = n if final else max(0, n - TAIL)
        start = self._pos - base
        shape = window.translate(_SHAPE)
        self._ibans = [span for span in self._ibans if span[1] > base]
        self._find_ibans(window, shape, base, start, limit)
        if b"<<" in window:
            self._find_mrz(window, start, limit)
        self._find_keywords(window, start, limit)
        resume = self._find_digit_runs(window, shape, base, self._digits_pos - base, limit, final)
        self._pos = base + limit
        self._digits_pos = base + resume
        keep = max(0, min(limit, resume) - LEFT)
        self._buf, self._base = window[keep:], base + keep

    # -- IBAN -------------------------------------------------------------------------------------

    def _find_ibans(self, window: bytes, shape: bytes, base: int, start: int, limit: int) -> None:
        for hit in _IBAN_START.finditer(shape, start):
            p = hit.start()
            if p >= limit:
                break
            if p and window[p - 1] in _ALNUM:
                continue
            m = _IBAN.match(window, p)
            if m is None:
                continue
            country = m.group(1).decode()
            if m.group(2):
                candidates = [(country + m.group(2).decode(), m.end())]
            else:
                groups = m.group(3).decode().split(" ")[1:]
                ends, end = [], p + 4
                for group in groups:
                    end += 1 + len(group)
                    ends.append(end)
                candidates = [(country + "".join(groups[:k]), ends[k - 1]) for k in range(len(groups), 1, -1)]
            for compact, end in candidates:
                if ids.is_iban(compact):
                    self._found("iban", ids.mask_iban(compact), p)
                    self._ibans.append((base + p, base + end))
                    break

    # -- passports --------------------------------------------------------------------------------

    def _find_mrz(self, window: bytes, start: int, limit: int) -> None:
        for m in _MRZ.finditer(window, start):
            if m.start() >= limit:
                break
            if m.start() and window[m.start() - 1] in _MRZ_CHARS:
                continue
            line2 = m.group(1).decode()
            if ids.is_td3_line2(line2):
                self._found("passport", ids.mask_passport(line2[:9].rstrip("<") or line2[:9]), m.start())

    def _find_keywords(self, window: bytes, start: int, limit: int) -> None:
        lowered = window.lower()
        if b"pas" not in lowered:
            return
        for m in _KEYWORD.finditer(lowered, start):
            p = m.start()
            if p >= limit:
                break
            before = p - 5 if lowered[max(0, p - 5):p] == b"reise" else p
            if before and lowered[before - 1] in _ALNUM:
                continue
            if _DIGIT.search(window, m.end(), m.end() + _KEYWORD_REACH) is None:
                continue
            number = self._number_after(window, m.end())
            if number:
                self._found("passport", ids.mask_passport(number), p)

    @staticmethod
    def _number_after(window: bytes, pos: int) -> str | None:
        """The passport number a keyword introduces: the first word that is not a filler, if it has a passport's shape."""
        reach = pos + _KEYWORD_REACH
        tokens = [t for t in _TOKEN.finditer(window, pos, reach) if t.end() < reach or reach >= len(window)][:6]
        if not tokens or b"." in window[pos:tokens[0].start()]:
            return None  # "… at the passport. 12345678": the sentence ended with the keyword
        for i, token in enumerate(tokens):
            word = token.group().decode("utf-8", "replace")
            if word.lower() in _FILLERS:
                continue
            if ids.is_passport_number(word):
                return word
            # "AB 1234567": series letters and number written apart.
            if word.isalpha() and word.isupper() and len(word) <= 3 and i + 1 < len(tokens):
                joined = word + tokens[i + 1].group().decode("utf-8", "replace")
                if tokens[i + 1].start() - token.end() == 1 and ids.is_passport_number(joined):
                    return joined
            return None
        return None

    # -- cards and PESEL --------------------------------------------------------------------------

    def _find_digit_runs(self, window: bytes, shape: bytes, base: int, start: int, limit: int, final: bool) -> int:
        """Judge each run of digit groups that holds a candidate; return where to resume.

        The common case, one group alone (a timestamp, an order number), is decided inline: its
        length and first digit rule most out before any checksum."""
        hits = [m.span() for m in _ELEVEN_DIGITS.finditer(shape, start)]
        grouped = [m.span() for m in _GROUPED_DIGITS.finditer(shape, start)]
        if grouped:
            hits = sorted(hits + grouped)
        n = len(window)
        done = self._digits_done - base
        resume = limit
        for p, end in hits:
            if p < done:
                continue
            if p >= limit or (end + 1 >= n and not final):
                run_start = _run_start(shape, p)
                if p < limit and n - run_start > MAX_RUN:
                    end = n  # a run this long holds nothing it needs its end for: judge it now, cut
                else:
                    resume = min(run_start, limit)  # it may go on in the next piece
                    break
            before = shape[p - 1] if p else _DOT
            if (before != _ZERO and before != _SEP or p < 2 or shape[p - 2] != _ZERO) and (
                    shape.find(b"s", p, end) == -1):
                length = end - p
                if length == 11 or (13 <= length <= 19 and window[p] in _CARD_FIRST_DIGITS):
                    self._judge_digits(window, p, end)
            else:
                self._judge_grouped(window, base, max(_run_start(shape, p), done), end)
            done = end
        self._digits_done = base + max(done, 0)
        return resume

    @staticmethod
    def _bounded(window: bytes, start: int, end: int) -> tuple[bool, bool]:
        """Whether the run stands alone on each side: no letter, digit or decimal point joins it."""
        left = start == 0 or not (window[start - 1] in _ALNUM or (
            window[start - 1] in b".," and start > 1 and window[start - 2] in _DIGITS))
        right = end >= len(window) or not (window[end] in _ALNUM or (
            window[end] in b".," and end + 1 < len(window) and window[end + 1] in _DIGITS))
        return left, right

    def _judge_digits(self, window: bytes, start: int, end: int) -> None:
        length = end - start
        if length != 11 and not 13 <= length <= 19:
            return
        if self._bounded(window, start, end) != (True, True):
            return
        digits = window[start:end].decode()
        if length == 11:
            if ids.is_pesel(digits):
                self._found("pesel", ids.mask_pesel(digits), start)
        elif ids.is_pan(digits):
            self._found("pan", ids.mask_pan(digits), start)

    def _judge_grouped(self, window: bytes, base: int, start: int, end: int) -> None:
        """Digit groups joined by single spaces or dashes: a PESEL is one group of 11, a card number is
        one group of 13-19 digits or consecutive groups of 3-6 digits each, 13-19 in all."""
        spans = [g.span() for g in _GROUP.finditer(window, start, end)]
        usable = [not self._in_iban(base + s, base + e) for s, e in spans] if self._ibans else [True] * len(spans)
        left, right = self._bounded(window, start, end)
        usable[0] = usable[0] and left
        usable[-1] = usable[-1] and right
        lengths = [e - s for s, e in spans]
        i = 0
        while i < len(spans):
            if not usable[i]:
                i += 1
                continue
            if lengths[i] == 11:
                digits = window[spans[i][0]:spans[i][1]].decode()
                if ids.is_pesel(digits):
                    self._found("pesel", ids.mask_pesel(digits), spans[i][0])
                    i += 1
                    continue
            if window[spans[i][0]] not in _CARD_FIRST_DIGITS or 3 > lengths[i] or 6 < lengths[i] < 13 or (
                    not ids.may_start_a_card(window[spans[i][0]:spans[i][1]].decode())):
                i += 1
                continue
            ends, total = [], 0
            for j in range(i, len(spans)):
                if not usable[j]:
                    break
                total += lengths[j]
                if total > 19 or (j > i and not (3 <= lengths[i] <= 6 and 3 <= lengths[j] <= 6)):
                    break
                if total >= 13:
                    ends.append(j)
            for j in reversed(ends):
                digits = b"".join(window[s:e] for s, e in spans[i:j + 1]).decode()
                if ids.is_pan(digits):
                    self._found("pan", ids.mask_pan(digits), spans[i][0])
                    i = j
                    break
            i += 1

    def _in_iban(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self._ibans)


_ZERO, _SEP, _DOT = ord("0"), ord("s"), ord(".")


def _run_start(shape: bytes, p: int) -> int:
    """Where the run of digit groups holding position p begins: after the last non-digit, non-separator
    character or double separator before it (looking back MAX_RUN at most), and not on a separator."""
    lo = max(0, p - MAX_RUN)
    q = max(shape.rfind(b".", lo, p), shape.rfind(b"A", lo, p), shape.rfind(b"a", lo, p)) + 1 or lo
    double = shape.rfind(b"ss", q, p)
    if double >= 0:
        q = double + 2
    return q + 1 if q < p and shape[q] == _SEP else q
