"""Speech text normalization: what the voice will actually say."""

import pytest

from functions.tts.speech import split_for_streaming
from functions.tts.textnorm import normalize_for_speech, spell_digits

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$89.99", "89 dollars and 99 cents"),
        ("$1", "1 dollar"),
        ("$0.50", "50 cents"),
        ("$1,250.00", "1250 dollars"),
        ("€12.5", "12 euros and 50 cents"),
        ("£3.01", "3 pounds and 1 penny"),
    ],
)
def test_money_is_said_in_words(text: str, expected: str) -> None:
    assert normalize_for_speech(text) == expected


def test_amount_inside_a_sentence() -> None:
    assert normalize_for_speech("You were charged $89.99 twice.") == "You were charged 89 dollars and 99 cents twice."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("account 4471", "account 4 4 7 1"),
        ("Account number: 4471-9902", "Account number: 4 4 7 1, 9 9 0 2"),
        ("order #88213", "order number 8 8 2, 1 3"),
        ("ticket no. 552", "ticket number 5 5 2"),
        ("card ending in 4242", "card ending in 4 2 4 2"),
        ("reference TK-88213", "reference T K, 8 8 2, 1 3"),
        ("call 555 123 4567", "call 5 5 5, 1 2 3, 4 5 6 7"),
        ("(555) 123-4567", "5 5 5, 1 2 3, 4 5 6 7"),
        ("+1 415 555 0199", "plus 1, 4 1 5, 5 5 5, 0 1 9 9"),
    ],
)
def test_identifiers_are_read_digit_by_digit(text: str, expected: str) -> None:
    assert normalize_for_speech(text) == expected


def test_spelled_identifier_gets_pauses_and_is_stable() -> None:
    once = normalize_for_speech("Caller Maria Lopez, account 4 4 7 1 9 9 0 2.")
    assert once == "Caller Maria Lopez, account 4 4 7 1, 9 9 0 2."
    assert normalize_for_speech(once) == once  # normalizing twice changes nothing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 2025 we had 3 outages", "in 2025 we had 3 outages"),  # years and small counts stay numbers
        ("the 2nd bill at 10am", "the 2nd bill at 10am"),
        ("15% off", "15 percent off"),
        ("R&D", "R and D"),
        ("Mr. Smith", "Mister Smith"),
        ("No. I did not.", "No. I did not."),  # "No." is not "number" when no digits follow
        ("on 2025-03-14", "on March 14, 2025"),
        ("maria.lopez@example.com", "maria dot lopez at example dot com"),
        ("  ", ""),
    ],
)
def test_other_written_forms(text: str, expected: str) -> None:
    assert normalize_for_speech(text) == expected


def test_spell_digits_keeps_letters_and_drops_punctuation() -> None:
    assert spell_digits("ab-12") == "A B, 1 2"
    assert spell_digits("5500712") == "5 5 0, 0 7 1 2"  # grouped, with a pause between the two 0s


def test_first_streaming_piece_is_short() -> None:
    text = "Caller Maria Lopez, account 4 4 7 1, was charged twice on her March bill. She wants a refund."
    pieces = split_for_streaming(text)
    assert len(pieces[0].split()) <= 8
    assert " ".join(pieces) == text  # nothing lost or reordered


def test_short_text_is_one_piece() -> None:
    assert split_for_streaming("Hello there.") == ["Hello there."]
    assert split_for_streaming("") == []
