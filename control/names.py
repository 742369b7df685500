"""Display names people type (caller names, agent names): one normalisation for every edge.

A name is shown to other people (the agents' desk, the transfer card, LiveKit participant
names) and spoken in briefs, so what is stored must look like what was typed and nothing
else: no right-to-left override turning "Ann‮gpj.exe" into a different-looking word, no
zero-width characters making two equal-looking names differ, no stray byte-order mark.

`normalize_name` does, in order: NFC (one spelling for "é"), drops every control and format
character (Unicode categories Cc and Cf: C0/C1 controls, the bidi embeddings, overrides and
isolates U+202A–U+202E and U+2066–U+2069, the marks U+200E/U+200F/U+061C, zero-width space,
non-joiner and joiner U+200B–U+200D, word joiner U+2060, BOM U+FEFF), plus unassigned,
private-use and surrogate code points; turns every kind of white space (tabs, no-break
spaces, line and paragraph separators) into one plain space; trims; checks the length.

Empty names: a name that was empty or only white space is no name (`""`; callers may stay
anonymous). A name that had characters but none left to show (e.g. only zero-width or bidi
characters) is refused with `InvalidInput`, since someone typed it on purpose and silently
making it anonymous would hide that.
"""

from __future__ import annotations

import re
import unicodedata

from functions.errors import InvalidInput

NAME_MAX_CHARS = 80

# Cc: controls; Cf: format (bidi, zero-width, BOM, soft hyphen…); Cs/Co/Cn: surrogates,
# private use, unassigned. Nothing in them is meant to be seen in a name.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_SPACE = re.compile(r"\s+")


def normalize_name(raw: object, *, field: str = "name", max_chars: int = NAME_MAX_CHARS) -> str:
    """The name as it will be stored and shown, or InvalidInput saying why it is refused."""
    if not isinstance(raw, str):
        raise InvalidInput(f"{field} must be text")
    text = unicodedata.normalize("NFC", raw)
    # White space first (tabs and line breaks are Cc, but they separate words: keep a space).
    text = _SPACE.sub(" ", text)
    text = "".join(c for c in text if unicodedata.category(c) not in _DROP_CATEGORIES)
    # Dropping a zero-width character between two spaces leaves a double space; NFC again
    # because a dropped character may have sat between a letter and its combining mark.
    name = _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()
    if not name and raw.strip():
        raise InvalidInput(f"{field} has no visible characters (only control, format or zero-width characters)")
    if len(name) > max_chars:
        raise InvalidInput(f"{field} is longer than {max_chars} characters")
    return name
