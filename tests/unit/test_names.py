"""Display names (caller and agent names): what is stored is what a person sees. Pure
functions, no peers."""

import unicodedata

import pytest

from control.names import NAME_MAX_CHARS, normalize_name
from functions.errors import InvalidInput

pytestmark = pytest.mark.unit

RLO, PDF, LRI, PDI = "\u202e", "\u202c", "\u2066", "\u2069"
ZWSP, ZWNJ, ZWJ, WJ, BOM = "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # RTL override: "Ann" + RLO + "gpj.exe" would render as "Annexe.jpg" for the agent.
        (f"Ann{RLO}gpj.exe", "Anngpj.exe"),
        (f"{RLO}Maria{PDF} Lopez", "Maria Lopez"),
        (f"{LRI}Maria{PDI}\u200e\u200f\u061c", "Maria"),
        # Zero-width characters make two equal-looking names differ.
        (f"Ma{ZWSP}ria{ZWNJ} Lo{ZWJ}pez{WJ}", "Maria Lopez"),
        (f"Maria {ZWSP} Lopez", "Maria Lopez"),
        # A byte-order mark pasted in front from a file.
        (f"{BOM}Maria Lopez", "Maria Lopez"),
        # Decomposed é (e + U+0301) becomes the one composed character.
        ("Jose\u0301 Garci\u0301a", "José García"),
        # White space of every kind collapses to one space, trimmed; controls are dropped.
        ("  Maria\t\u00a0 Lopez\u2028 ", "Maria Lopez"),
        ("Eve\x00\x1b[31m", "Eve[31m"),
        ("Maria\u00adLopez", "MariaLopez"),  # soft hyphen (Cf)
        # Names in other scripts are kept as typed.
        ("محمد علي", "محمد علي"),
        ("李小龍", "李小龍"),
        ("Zoë O'Brien-Smith", "Zoë O'Brien-Smith"),
    ],
)
def test_names_are_normalised_for_display(raw: str, expected: str) -> None:
    out = normalize_name(raw)
    assert out == expected
    assert unicodedata.is_normalized("NFC", out)
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in out)


@pytest.mark.parametrize("raw", ["", "   ", "\t \u00a0"])
def test_empty_or_blank_is_no_name(raw: str) -> None:
    assert normalize_name(raw) == ""


@pytest.mark.parametrize("raw", [RLO, f"{ZWSP}{ZWJ}", BOM, f" {LRI}{PDI} ", "\x00\x01"])
def test_nothing_visible_left_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="no visible characters"):
        normalize_name(raw, field="caller_name")


def test_length_is_checked_after_normalisation() -> None:
    assert normalize_name("x" * NAME_MAX_CHARS + ZWSP * 20) == "x" * NAME_MAX_CHARS
    with pytest.raises(InvalidInput, match="80"):
        normalize_name("x" * (NAME_MAX_CHARS + 1))
    # U+FB2C (Hebrew shin with dagesh and shin dot) is one code point that NFC turns into three.
    with pytest.raises(InvalidInput, match="80"):
        normalize_name("\ufb2c" * 30)


def test_not_text_is_refused() -> None:
    with pytest.raises(InvalidInput, match="text"):
        normalize_name(42)  # type: ignore[arg-type]
