"""What makes a candidate a real identifier, and how one is shown masked.

Pure functions on ASCII strings the scanner already cut out of the text. The
checksums are python-stdnum's (Luhn, PESEL, IBAN mod 97); the card issuer ranges
and the ICAO 9303 check digits are ours, small enough to read here.
A masked sample never holds enough of a value to use it: a card number keeps
its first and last four digits at most (PCI DSS 3.4.1), the rest is bullets.
"""

from __future__ import annotations

import datetime
import re

from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.pl import pesel as stdnum_pesel

MASK = "\u2022"  # •

# Card schemes: (lowest prefix, highest prefix, allowed lengths). Prefixes of one
# rule have equal length, so string comparison orders them as numbers.
_ANY = range(16, 20)
_CARD_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = tuple(
    (lo, hi, frozenset(lengths)) for lo, hi, lengths in (
        ("4", "4", (13, 16, 19)),                            # Visa (incl. Electron)
        ("51", "55", (16,)), ("2221", "2720", (16,)),         # Mastercard
        ("34", "34", (15,)), ("37", "37", (15,)),             # American Express
        ("6011", "6011", _ANY), ("644", "649", _ANY), ("65", "65", _ANY),  # Discover
        ("3528", "3589", _ANY),                              # JCB
        ("300", "305", range(14, 20)), ("3095", "3095", range(14, 20)),  # Diners Club
        ("36", "36", range(14, 20)), ("38", "39", _ANY),
        ("62", "62", _ANY),                                  # UnionPay
        ("5018", "5018", range(13, 20)), ("5020", "5020", range(13, 20)),  # Maestro
        ("5038", "5038", range(13, 20)), ("5893", "5893", range(13, 20)),
        ("6304", "6304", range(13, 20)), ("6759", "6759", range(13, 20)),
        ("6761", "6763", range(13, 20)),
        ("5019", "5019", (16,)),                             # Dankort
        ("2200", "2204", _ANY),                              # Mir
        ("9792", "9792", (16,)),                             # Troy
    )
)
_CARDS_BY_FIRST_DIGIT: dict[str, tuple[tuple[str, str, frozenset[int]], ...]] = {
    digit: tuple(rule for rule in _CARD_RANGES if rule[0][0] <= digit <= rule[1][0]) for digit in "0123456789"
}
PAN_LENGTHS = range(13, 20)


# Luhn doubles every second digit from the right and adds the digits of the product.
_DOUBLED = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def _luhn_sum_is_zero(digits: bytes) -> bool:
    """A quick Luhn in C-level byte sums, so look-alikes cost little; stdnum confirms what passes."""
    kept = digits[-1::-2]
    return (sum(kept) - 48 * len(kept) + sum(digits[-2::-2].translate(_DOUBLED))) % 10 == 0


def is_pan(digits: str) -> bool:
    """A payment card number: a known issuer range with that scheme's length, and Luhn."""
    n = len(digits)
    for lo, hi, lengths in _CARDS_BY_FIRST_DIGIT[digits[0]]:
        if n in lengths and lo <= digits[:len(lo)] <= hi:
            return _luhn_sum_is_zero(digits.encode()) and luhn.is_valid(digits)
    return False


def may_start_a_card(prefix: str) -> bool:
    """Whether some issuer range begins with these digits (the first group of a grouped number)."""
    for lo, hi, _ in _CARDS_BY_FIRST_DIGIT[prefix[0]]:
        k = min(len(lo), len(prefix))
        if lo[:k] <= prefix[:k] <= hi[:k]:
            return True
    return False


_PESEL_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)


def is_pesel(digits: str, today: datetime.date | None = None) -> bool:
    """A PESEL: its check digit, and a birth date that exists (century in the month) and is not in the future."""
    month = int(digits[2:4])
    if not 1 <= month % 20 <= 12 or not 1 <= int(digits[4:6]) <= 31:
        return False
    if sum(w * (b - 48) for w, b in zip(_PESEL_WEIGHTS, digits.encode())) % 10 != (10 - int(digits[10])) % 10:
        return False
    if not stdnum_pesel.is_valid(digits):  # the same checksum, and that the date exists
        return False
    return stdnum_pesel.get_birth_date(digits) <= (today or datetime.date.today())


def is_iban(compact: str) -> bool:
    """An IBAN: a registered country, that country's BBAN shape and length, and mod 97 (plus national checks)."""
    return stdnum_iban.is_valid(compact)


# ICAO 9303 part 3 §4.9: weights 7, 3, 1; digits are themselves, A-Z are 10-35, the filler < is 0.
_MRZ_VALUES = {**{c: i for i, c in enumerate("0123456789")},
               **{c: 10 + i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}, "<": 0}
_WEIGHTS = (7, 3, 1)


def mrz_check_digit(field: str) -> str:
    return str(sum(_MRZ_VALUES[c] * _WEIGHTS[i % 3] for i, c in enumerate(field)) % 10)


def _mrz_date(yymmdd: str) -> bool:
    """A calendar date in some century (the MRZ does not say which)."""
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    for century in (1900, 2000):
        try:
            datetime.date(century + yy, mm, dd)
            return True
        except ValueError:
            continue
    return False


def is_td3_line2(line: str) -> bool:
    """The second MRZ line of a passport (TD3, 44 characters) with every check digit right.

    Positions (0-based): document number 0-8, check 9; nationality 10-12; birth date
    13-18, check 19; sex 20; expiry 21-26, check 27; personal number 28-41, check 42
    (0 or < when unused); composite check 43 over 0-9, 13-19 and 21-42.
    """
    if len(line) != 44:
        return False
    if mrz_check_digit(line[0:9]) != line[9]:
        return False
    if mrz_check_digit(line[13:19]) != line[19] or not _mrz_date(line[13:19]):
        return False
    if mrz_check_digit(line[21:27]) != line[27] or not _mrz_date(line[21:27]):
        return False
    personal, personal_check = line[28:42], line[42]
    if personal_check == "<":
        if personal.strip("<"):
            return False
    elif mrz_check_digit(personal) != personal_check:
        return False
    composite = line[0:10] + line[13:20] + line[21:43]
    return mrz_check_digit(composite) == line[43]


# Passport numbers as countries print them, near a keyword: PL/IT/… AB1234567,
# US/UK 9 digits, FR 12AB34567, ES AAA123456, CA/IN A1234567 / AB123456, DE C01X00T47.
_PASSPORT_SHAPE = re.compile(
    r"[A-Z]{1,3}[0-9]{6,8}|[0-9]{8,9}|[0-9]{2}[A-Z]{2}[0-9]{5}|[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{8}")


def is_passport_number(token: str) -> bool:
    return _PASSPORT_SHAPE.fullmatch(token) is not None and sum(c.isdigit() for c in token) >= 3


def _grouped(masked: str) -> str:
    return " ".join(masked[i:i + 4] for i in range(0, len(masked), 4))


def mask_pan(digits: str) -> str:
    """First four and last four digits, bullets between: 4111 •••• •••• 1111, 3782 •••• ••• 0005."""
    return f"{digits[:4]} {_grouped(MASK * (len(digits) - 8))} {digits[-4:]}"


def mask_pesel(digits: str) -> str:
    return digits[:2] + MASK * (len(digits) - 2)


def mask_iban(compact: str) -> str:
    """Country and check digits, bullets, the last four: PL61 •••• … 2874."""
    return _grouped(compact[:4] + MASK * (len(compact) - 8) + compact[-4:])


def mask_passport(number: str) -> str:
    return number[0] + MASK * (len(number) - 1)
