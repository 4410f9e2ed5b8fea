"""What counts as a card number, PESEL, IBAN or passport number, and what only looks like one."""

from __future__ import annotations

import datetime

import pytest

from app.dlp import identifiers as ids
from app.dlp.detect import Scanner

from tests.dlp.conftest import counts


def found(text: str) -> dict[str, int]:
    scanner = Scanner()
    scanner.feed(text.encode())
    return {f.kind: f.count for f in scanner.finish()}


ICAO_MRZ = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"


@pytest.mark.parametrize("number", [
    "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111",   # Visa
    "4222222222222",                                                     # Visa, 13 digits
    "5555555555554444", "2223003122003222",                              # Mastercard, both ranges
    "378282246310005", "3782 822463 10005",                              # Amex, 4-6-5
    "6011111111111117", "6445644564456445",                              # Discover
    "3530111333300000",                                                  # JCB
    "36227206271667", "3056 930902 5904",                                # Diners, 14 digits
    "6200000000000005",                                                  # UnionPay
    "6759649826438453",                                                  # Maestro
])
def test_card_numbers_of_each_scheme_are_found(number):
    assert found(f"paid with {number} yesterday") == {"pan": 1}


@pytest.mark.parametrize("number", [
    "4111111111111112",          # Luhn fails
    "1234567812345670",          # Luhn-valid, no issuer starts with 1
    "7992739871300000",          # no issuer starts with 7
    "3411111111111110",          # Luhn-valid Amex prefix with 16 digits (Amex is 15)
    "41111111111111113",         # Luhn-valid Visa prefix with 17 digits
    "5611111111111110",          # 56 is no Mastercard range
])
def test_card_look_alikes_are_not_reported(number):
    assert ids.is_pan(number.replace(" ", "")) is False
    assert found(f"order {number} shipped") == {}


def test_random_sixteen_digit_numbers_failing_luhn_are_not_reported():
    from stdnum import luhn
    import random

    rnd = random.Random(6)
    text = []
    for _ in range(500):
        body = "4" + "".join(rnd.choice("0123456789") for _ in range(14))
        text.append(f"ref {body}{(int(luhn.calc_check_digit(body)) + 1 + rnd.randrange(9)) % 10}")
    assert found("\n".join(text)) == {}


@pytest.mark.parametrize("text", [
    "x 44051401359123 y",        # a PESEL inside a longer run of digits
    "x 123444051401359 y",
    "41111111111111119999",      # a card number inside 20 digits
    "a4111111111111111b",        # inside a word (hex, hashes)
    "sha 9f4111111111111111ab",
    "pi 0.4111111111111111",     # the decimals of a number
    "1,4111111111111111",
    "PESEL44051401359x",
])
def test_digits_inside_longer_runs_or_words_are_not_findings(text):
    assert found(text) == {}


def test_a_card_followed_by_its_expiry_and_a_pesel_followed_by_a_number_are_found():
    assert found("4111111111111111 12/27") == {"pan": 1}
    assert found("4111 1111 1111 1111 12 27") == {"pan": 1}
    assert found("44051401359 12 Krakow") == {"pesel": 1}
    assert found("nr 12 4111111111111111") == {"pan": 1}


@pytest.mark.parametrize("pesel, born", [
    ("44051401359", datetime.date(1944, 5, 14)),
    ("02211307589", datetime.date(2002, 1, 13)),   # months 21-32: born 2000-2099
    ("04250101236", datetime.date(2004, 5, 1)),
])
def test_pesels_with_checksum_and_real_birth_dates_are_found(pesel, born):
    from stdnum.pl.pesel import get_birth_date

    assert ids.is_pesel(pesel) and get_birth_date(pesel) == born
    assert found(f"PESEL: {pesel}") == {"pesel": 1}


@pytest.mark.parametrize("pesel", [
    "44051401358",   # wrong check digit
    "99130112347",   # checksum right, month 13
    "02223012349",   # checksum right, 30 February 2002
    "50620101232",   # checksum right, born in 2150
])
def test_pesel_look_alikes_are_not_reported(pesel):
    assert found(f"PESEL: {pesel}") == {}


def test_a_pesel_born_in_the_future_is_impossible():
    assert ids.is_pesel("04250101236", today=datetime.date(2004, 4, 30)) is False


@pytest.mark.parametrize("iban", [
    "DE89370400440532013000", "DE89 3704 0044 0532 0130 00",
    "PL61109010140000071219812874", "PL61 1090 1014 0000 0712 1981 2874",
    "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32",
    "NO9386011117947",
])
def test_ibans_are_found_compact_or_in_groups_of_four(iban):
    assert found(f"pay to {iban}, thanks") == {"iban": 1}


def test_a_grouped_iban_followed_by_a_word_in_capitals_is_found():
    assert found("PL61 1090 1014 0000 0712 1981 2874 BANK PKO") == {"iban": 1}


@pytest.mark.parametrize("iban", [
    "DE88370400440532013000",     # mod 97 wrong
    "DE5437040044053201300010",   # mod 97 right, but 24 characters (Germany has 22)
    "XX89370400440532013000",     # no such country
    "GB82 WEST 1234 5698 7654 33",
])
def test_iban_look_alikes_are_not_reported(iban):
    assert found(f"pay to {iban}") == {}


def test_the_digits_of_a_grouped_iban_are_not_also_a_card_or_pesel():
    assert found("IBAN PL61 1090 1014 0000 0712 1981 2874") == {"iban": 1}


def test_a_passport_machine_readable_zone_is_found():
    assert ids.is_td3_line2(ICAO_MRZ.splitlines()[1])
    assert found(f"scan of page 2:\n{ICAO_MRZ}\n") == {"passport": 1}


@pytest.mark.parametrize("position, replacement", [
    (9, "7"),    # document number check digit
    (19, "3"),   # birth date check digit
    (27, "8"),   # expiry check digit
    (43, "1"),   # composite check digit
])
def test_an_mrz_with_a_wrong_check_digit_is_not_reported(position, replacement):
    line1, line2 = ICAO_MRZ.splitlines()
    broken = line2[:position] + replacement + line2[position + 1:]
    assert found(f"{line1}\n{broken}\n") == {}


@pytest.mark.parametrize("text", [
    "Passport no. AB1234567",
    "passport number: 123456789",
    "PASSPORT # X12345678",
    "numer paszportu: EA 1234567",
    "Paszport AB1234567",
    "Reisepass-Nr. C01X00T47",
    "Reisepassnummer C01X00T47",
    "passeport n° 12AB34567",
    "pasaporte: AAA123456",
])
def test_passport_numbers_next_to_keywords_are_found(text):
    assert found(text) == {"passport": 1}


@pytest.mark.parametrize("text", [
    "Passport office hours 9 to 17",
    "The passport. 12345678 people applied",
    "passport photos: 2",
    "passport expiry 2031-12-31",
    "passing 123456789 compass AB1234567",
    "AB1234567 with no keyword",
])
def test_numbers_not_introduced_as_passport_numbers_are_not_reported(text):
    assert found(text) == {}


def test_each_occurrence_is_counted_and_one_masked_sample_kept():
    result = found("4111111111111111, 5555 5555 5555 4444 and 4111-1111-1111-1111")
    assert result == {"pan": 3}


@pytest.mark.parametrize("value, masked", [
    ("4111111111111111", "4111 •••• •••• 1111"),
    ("378282246310005", "3782 •••• ••• 0005"),
])
def test_card_masks_show_first_and_last_four_at_most(value, masked):
    assert ids.mask_pan(value) == masked
    assert sum(c.isdigit() for c in masked) == 8


def test_samples_never_hold_a_whole_value():
    values = {
        "pan": "5555555555554444", "pesel": "44051401359", "iban": "PL61109010140000071219812874",
        "passport": "AB1234567",
    }
    scanner = Scanner()
    scanner.feed(f"card {values['pan']} pesel {values['pesel']} iban {values['iban']} "
                 f"passport no. {values['passport']}\n{ICAO_MRZ}\n".encode())
    findings = scanner.finish()
    assert {f.kind for f in findings} == set(values)
    for finding in findings:
        compact = finding.sample.replace(" ", "")
        assert values[finding.kind] not in compact
        assert "L898902C3" not in compact
        revealed = sum(c.isalnum() for c in compact)
        assert revealed <= {"pan": 8, "pesel": 2, "iban": 8, "passport": 1}[finding.kind], finding
        assert "•" in finding.sample
    assert not any(v in repr(scanner.__dict__) for v in values.values())


def test_counts_helper_matches_findings(scan):
    assert counts(scan(b"4111111111111111\n")) == {"pan": 1}
