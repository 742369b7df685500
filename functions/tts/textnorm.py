"""Text normalization for speech: turn written forms into what a person would say.

Rules (all deterministic, no model):
- money: "$89.99" → "89 dollars and 99 cents", "$1" → "1 dollar", "€12.50" → "12 euros and 50 cents",
  "$1,250" → "1250 dollars";
- identifiers are read digit by digit in groups ("4471-9902" → "4 4 7 1, 9 9 0 2"): digit groups
  after words like account/order/ticket/case/invoice/number/#/ending in, any run of 5+ digits (phone
  numbers too), and letter+digit codes ("AB-1234" → "A, B, 1, 2, 3, 4");
- "15%" → "15 percent", "&" → "and", "#" → "number", e-mail addresses → "name at host dot com",
  a few abbreviations (Mr., Mrs., Dr., approx., etc.), ISO dates "2025-03-14" → "March 14, 2025".
The output is plain text that piper, espeak-ng or a cloud voice reads correctly.
"""

from __future__ import annotations

import itertools
import re

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}

_ABBREVIATIONS = {
    "mr.": "Mister",
    "mrs.": "Missus",
    "ms.": "Miz",
    "dr.": "Doctor",
    "st.": "Street",
    "approx.": "approximately",
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
    "vs.": "versus",
    "acct": "account",
    "acct.": "account",
}

# Words after which a number is an identifier and is read digit by digit.
_ID_WORDS = (
    r"account|acct|order|ticket|case|invoice|reference|ref|confirmation|tracking|policy|member|"
    r"customer|pin|number|no\.|#|ending\s+in|ends\s+in|id"
)
_ID_AFTER_WORD = re.compile(
    rf"\b(?P<kw>{_ID_WORDS})(?P<sep>(?:\s+(?:number|no\.|is|was|id))*\s*[:#]?\s*)(?P<id>\d(?:,?[\s-]*\d)*)",
    re.IGNORECASE,
)
_HASH_ID = re.compile(r"#\s?(?P<id>\d[\d-]*)")
_MONEY = re.compile(r"(?P<cur>[$€£])\s?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d{1,2}))?(?!\d)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_ALNUM_CODE = re.compile(r"\b(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\b")
_LONG_DIGITS = re.compile(r"(?<![\d.,])\+?\(?\d(?:[\d\s().-]*\d)?(?![\d])")
_ORDINAL = re.compile(r"^\d+(st|nd|rd|th)$", re.IGNORECASE)


_GROUPS = {5: (3, 2), 6: (3, 3), 7: (4, 3), 8: (4, 4), 9: (3, 3, 3), 10: (3, 3, 4), 11: (1, 3, 3, 4)}


def _group_digits(run: str) -> list[str]:
    """Split a digit run into groups of 1-4; among orders of the group sizes, prefer the one that puts
    a pause between repeated digits ("5 5 0, 0 7 1 2" rather than "5 5 0 0, 7 1 2": "0 0" is heard as one 0)."""
    base = _GROUPS.get(len(run)) or ((len(run),) if len(run) <= 4 else (4,) * (len(run) // 4) + (len(run) % 4,))
    base = tuple(n for n in base if n)

    def split(sizes: tuple[int, ...]) -> list[str]:
        out, i = [], 0
        for n in sizes:
            out.append(run[i : i + n])
            i += n
        return out

    def repeats(groups: list[str]) -> int:
        return sum(g[k] == g[k + 1] for g in groups for k in range(len(g) - 1))

    best = min(sorted(set(itertools.permutations(base)), key=lambda p: p != base), key=lambda p: repeats(split(p)))
    return [" ".join(g) for g in split(best)]


def spell_digits(s: str) -> str:
    """'4471-9902' → '4 4 7 1, 9 9 0 2', 'TK-40931' → 'T K, 4 0 9, 3 1'.

    Characters are read one by one, in groups of 2-4 with a comma (a pause) between groups, the way an
    agent reads a number back. Measured with piper + Whisper: ungrouped runs such as "8 8 2 1 3" are
    heard as "888213", and a comma after every digit makes Whisper write "for, for" for "4, 4"."""
    parts: list[str] = []
    for run in re.findall(r"[A-Za-z]+|\d+", s):
        parts.extend([" ".join(run.upper())] if run.isalpha() else _group_digits(run))
    return ", ".join(parts)


def _money(m: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[m.group("cur")]
    whole = int(m.group("int").replace(",", ""))
    frac = m.group("frac")
    cents = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if whole or not cents:
        parts.append(f"{whole} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cents} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def _iso_date(m: re.Match[str]) -> str:
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return f"{_MONTHS[month - 1]} {day}, {year}"


def _email(m: re.Match[str]) -> str:
    s = m.group(0).replace("@", " at ").replace(".", " dot ").replace("_", " underscore ").replace("-", " dash ")
    return re.sub(r"\s+", " ", s)


def _id_after_word(m: re.Match[str]) -> str:
    digits = m.group("id")
    trailing = ""
    if digits.endswith((" ", "-")):
        trailing = digits[len(digits.rstrip(" -")) :]
    if re.fullmatch(r"\d(?:,?\s\d)+[\s-]*", digits):  # already read digit by digit: regroup the digits
        digits = re.sub(r"\D", "", digits) + trailing
    kw = m.group("kw")
    kw = "number" if kw.lower() in ("no.", "#") else kw
    return f"{kw}{m.group('sep')}{spell_digits(digits)}{trailing}"


def _long_digits(m: re.Match[str]) -> str:
    s = m.group(0)
    digits = re.sub(r"\D", "", s)
    if len(digits) < 5:
        return s
    # A grouping like "1,250" or a decimal is a quantity, not an identifier.
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", s):
        return s
    # Runs of single digits are already spelled; keep them.
    if re.fullmatch(r"\d(,?\s\d)+", s) and len(digits) <= 11:
        return s
    lead = "plus " if s.startswith("+") else ""
    s = s.lstrip("+")
    return lead + spell_digits(s)


def _alnum_code(m: re.Match[str]) -> str:
    s = m.group(0)
    if _ORDINAL.match(s) or re.fullmatch(r"\d+(am|pm|s|k|m|kb|mb|gb|tb|ghz|mhz)", s, re.IGNORECASE):
        return s
    return spell_digits(s)


def normalize_for_speech(text: str) -> str:
    """Rewrite `text` so a TTS engine says amounts, identifiers and symbols the way an agent would."""
    s = text.strip()
    if not s:
        return ""
    s = _EMAIL.sub(_email, s)
    s = re.sub(r"\b[Nn]o\.\s*(?=\d)", "number ", s)
    s = _ISO_DATE.sub(_iso_date, s)
    s = _MONEY.sub(_money, s)
    s = _PERCENT.sub(lambda m: f"{m.group(1)} percent", s)
    s = _ID_AFTER_WORD.sub(_id_after_word, s)
    s = _HASH_ID.sub(lambda m: "number " + spell_digits(m.group("id")), s)
    s = _ALNUM_CODE.sub(_alnum_code, s)
    s = _LONG_DIGITS.sub(_long_digits, s)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 1,250 → 1250 (engines read it as one number)
    words = []
    for w in s.split():
        words.append(_ABBREVIATIONS.get(w.lower(), w))
    s = " ".join(words)
    s = s.replace("&", " and ").replace("#", " number ").replace("+", " plus ")
    s = re.sub(r"(?<=[A-Za-z])/(?=[A-Za-z])", " ", s)  # and/or → and or
    return re.sub(r"\s+", " ", s).strip()
