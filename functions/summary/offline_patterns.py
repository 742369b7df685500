"""Patterns and small text helpers for the offline summarizer (`functions.summary.offline_summary`).

Lexicons are English first, with a few Spanish and French forms for callers who mix languages.
"""

from __future__ import annotations

import re


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


FACT_MAX_WORDS = 22

# --- patterns -----------------------------------------------------------------------------------

# Split after . ! ? but not after a title ("Dr. Chen", "Ms. Lopez"): the name belongs to its sentence.
SENT_SPLIT = re.compile(r"(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bMrs\.)(?<!\bSt\.)(?<=[.!?])\s+|\n+")
INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|prompts?|rules|above|previous|system)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bas an ai\b|\bnew instructions?\b|\bjailbreak\b|\bdeveloper mode\b"
    r"|\b(respond|reply|answer|output|write|print|say)\b.{0,30}\b(json|in (french|german|spanish)|only|exactly)\b"
    r"|\b(summary|brief|summari[sz]er?)\b.{0,40}\b(must|should)\b.{0,20}\b(say|state|include|read)\b"
    r"|\bnote to (?:the )?(?:ai|assistant|bot|model|summari[sz]er)\b|\btell the (?:next|other) agent\b"
    r"|\bno restrictions\b|\b(?:ai|language model|chatbot) assistant\b",
    re.IGNORECASE,
)

_NAME_WORD = r"(?:Mc|Mac|O')?[A-Z][a-zà-öø-ÿ]+(?:[-'][A-Z][a-zà-öø-ÿ]+)?"
_NAME = rf"{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}}"
NOT_NAMES = _wordset(
    """I Im Calling Sorry Not Really Just So Very Here Actually Still Having Trying Afraid Sure Fine Good
    Okay Ok Yes No Hi Hello Hey The A An And But Because Monday Tuesday Wednesday Thursday Friday
    Saturday Sunday January February March April May June July August September October November
    December Customer Support Billing Calling About Going Looking Frustrated Angry Upset Happy Glad Done
    Back Again Told Ready Waiting On Your My This That It Is Was Um Uh Well Oh"""
)
CALLER_NAME_PATTERNS = [
    re.compile(rf"\b(?:[Mm]y name is|[Mm]y name's|[Nn]ame is|[Mm]e llamo|[Mm]i nombre es|[Jj]e m'appelle)\s+({_NAME})"),
    re.compile(
        rf"\b(?:[Tt]his is|[Ii]t's|[Ii]t is|I'm|I am)\s+({_NAME})"
        r"(?=\s*(?:[,.!?]|$|\s+(?:from|calling|and|here|I|my|speaking)\b))"
    ),
    re.compile(rf"(?:^|[,.!]\s*)(?:(?:Hi|Hello|Hey|Yes|Yeah|Sure),?\s+)?({_NAME})(?=\s+(?:here|speaking)\b)"),
]
NAME_LOWER = re.compile(r"\b(?:my name is|my name's|me llamo|mi nombre es)\s+([a-z][a-z'-]+(?:\s+[a-z][a-z'-]+)?)")
LOWER_STOP = _wordset("""and i calling about from with the a um uh here so but because not just is it""")
AGENT_NAME_PATTERNS = [
    re.compile(rf"\b(?:speaking (?:with|to)|[Tt]hank you|[Tt]hanks),?\s+((?:Mr\.|Mrs\.|Ms\.|Miss)\s+{_NAME_WORD})"),
    re.compile(rf"\b[Ss]peaking (?:with|to)\s+({_NAME})\?"),
]
ANSWER_NAME = re.compile(rf"^(?:(?:It's|Its|Yes|Yeah|Sure),?\s+)?({_NAME_WORD}\s+{_NAME_WORD})\.?$")

_KIND_WORDS: list[tuple[str, str]] = [
    ("account", r"account|acct|customer|member|cuenta|compte"),
    ("order", r"order|pedido|commande|tracking"),
    ("ticket", r"ticket|reference|ref|confirmation"),
    ("case", r"case|claim"),
    ("invoice", r"invoice|bill|factura|facture"),
    ("phone", r"phone|callback|mobile|cell"),
    ("other", r"policy|serial|pin|id|membership|card|code|license|licence|key|prescription|rx|number"),
]
_ID_TOKEN = (
    r"(?:[A-Z]{1,5}-?\d[\dA-Z-]*\d"  # TK-88213, INV-2024-0031, AB12345
    r"|\d(?:(?:,\s|\s|-)\d(?!\d)){3,}"  # 4, 4, 7, 1 / 4 4 7 1 / 4-4-7-1 (digit by digit)
    r"|\d{2,}(?:[\s-]\d{2,})*"  # 4471, 4471-9902, 447 1990
    r")"
)
_ID_GLUE = (
    r"(?:\s+(?:number|numbers|no\.?|num|id|is|was|it's|its|ending in|ends in|de|numéro|número|es|est))*"
    r"\s*[:#,]?\s*(?:is\s+|it's\s+)?"
)
ID_AFTER_KW = [
    (kind, re.compile(rf"\b(?:{words})s?\b{_ID_GLUE}(?P<id>{_ID_TOKEN})\b", re.IGNORECASE))
    for kind, words in _KIND_WORDS
]
ID_KIND_IN_QUESTION = [(kind, re.compile(rf"\b(?:{words})\b", re.IGNORECASE)) for kind, words in _KIND_WORDS]
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PHONE = re.compile(r"(?<!\d)(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}(?!\d)")
BARE_NUMBER = re.compile(r"(?<![\d$€£.,])\d(?:[\d-]|\s(?=\d)){3,}\d?(?![\d%])")
_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
# Speech-to-text writes some digits as homophones ("five five oh one to three"); only between two digit words
# is "to"/"for" read as a digit, so ordinary speech ("one for me") is left alone.
_DIGIT_HOMOPHONE = re.compile(rf"\b({_DIGIT_WORD})([\s,-]+)(to|too|for|won|ate)(?=[\s,-]+{_DIGIT_WORD}\b)", re.I)
_HOMOPHONE_DIGIT = {"to": "two", "too": "two", "for": "four", "won": "one", "ate": "eight"}
_DIGIT_WORD_RUN = re.compile(
    r"\b(?:(?:double|triple)\s+)?(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
    r"(?:[\s,-]+(?:(?:double|triple)\s+)?(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\b){2,}",
    re.IGNORECASE,
)

AMOUNT = re.compile(
    r"[$€£]\s?\d[\d,]*(?:\.\d{1,2})?"
    r"|\b\d[\d,]*(?:[.,]\d{1,2})?\s?(?:€|dollars?|bucks|euros?|pounds?|usd|cents|pesos|%|percent)"
    r"(?:\s+and\s+\d{1,2}\s+cents)?",
    re.IGNORECASE,
)
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
DATE = re.compile(
    rf"\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+of\s+{_MONTH}\b"
    r"|\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|\b\d{4}-\d{2}-\d{2}\b"
    r"|\b(?:last|this|next|since|on)\s+(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|week|month|year)\b"
    r"|\b(?:until|by|before)\s+(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"
    r"|\b(?:yesterday|today|tonight|this morning|last night|tomorrow(?: morning| afternoon)?)\b"
    r"|\b(?:\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|a few|several)"
    r"\s+(?:days?|weeks?|months?|years?|hours?)"
    r"(?:\s+ago)?\b"
    r"|\b\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)",
    re.IGNORECASE,
)
COUNT = re.compile(r"\b(?:twice|three times|four times|several times|\d+ times|double[- ]charged)\b", re.IGNORECASE)

CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    (
        "Cancellation",
        re.compile(r"\bcancel\w*|\bterminat\w*|\bclose my account\b|\bswitch(?:ing)? (?:to|provider)|cancelar", re.I),
    ),
    (
        "Billing",
        re.compile(
            r"\b(?:charg\w*|bill\w*|refund\w*|invoice\w*|overcharg\w*|payment\w*|paid|fee|fees|price|credit"
            r"|cobr\w*|reembolso|factura\w*)\b",
            re.I,
        ),
    ),
    (
        "Technical",
        re.compile(
            r"\b(?:not working|doesn't work|isn't working|stopped working|won't|outage|down|error|router|modem|wifi"
            r"|wi-fi|internet|connection|disconnect\w*|slow|crash\w*|broken|signal|no service|reboot\w*|restart\w*"
            r"|no funciona)\b",
            re.I,
        ),
    ),
    (
        "Account access",
        re.compile(r"\b(?:password|log ?in|locked out|sign in|two-factor|2fa|verification code)\b", re.I),
    ),
    ("Order or delivery", re.compile(r"\b(?:deliver\w*|shipping|shipped|package|arriv\w*|tracking|parcel)\b", re.I)),
]
TRIED = re.compile(
    r"\b(?:tried|already|restarted|rebooted|reset|unplugged|plugged|reinstalled|cleared|power[- ]cycled"
    r"|turned it off|updated|called (?:in|before|twice|yesterday|last)|spoke (?:to|with)|was told|they told me"
    r"|last agent|previous agent|sent (?:an )?email|ya intenté|changed (?:my|the) password|checked with)\b",
    re.I,
)
WANT_LEAD = re.compile(
    r"\b(?:I just want|I want|I'd like|I would like|I need|I'm asking for|I expect|I demand|I'm calling to"
    r"|can you|could you|can I|can we|I'd love|quiero|necesito)\b",
    re.I,
)
WANT = re.compile(
    r"\b(?P<lead>I just want|I want|I'd like|I would like|I need|I'm asking for|I expect|I demand|I'm calling to"
    r"|can you|could you|can I|can we|I'd love|quiero|necesito)\b\s*(?P<rest>.*)",
    re.I,
)
OUTCOME_WORDS = re.compile(
    r"\b(?:refund\w*|cancel\w*|credit|replace\w*|fix\w*|technician|manager|supervisor|reverse|waive|close|"
    r"reimburs\w*|send|reset|escalat\w*|compensat\w*|discount|resolve|reembolso)\b",
    re.I,
)
ANGRY = re.compile(
    r"\b(?:ridiculous|unacceptable|furious|angry|outrageous|worst|terrible|horrible|disgusting|lawyer|sue|scam"
    r"|fed up|sick of|third time|fourth time|damn|hell|crap|bullshit|pissed|absurd|insane|incompetent)\b",
    re.I,
)
FRUSTRATED = re.compile(
    r"\b(?:frustrat\w*|annoy\w*|(?:happened|dropped|broke|failed|down) again|again and again|still|keeps?"
    r"|disappointed|upset|not happy|waste|hours|been waiting|on hold|nobody|no one|every time|tired of"
    r"|already called|called (?:twice|again))\b",
    re.I,
)
POSITIVE = re.compile(
    r"\b(?:thank you so much|great|appreciate\w*|perfect|wonderful|awesome|happy|helpful|excellent|lovely)\b", re.I
)


def is_caller(speaker: str) -> bool:
    return speaker.strip().lower().startswith("caller")


def digits_view(text: str) -> str:
    """Replace runs of spoken digit words ("four four seven one") with digits ("4471")."""

    def repl(m: re.Match[str]) -> str:
        out, mult = [], 1
        for w in re.split(r"[\s,-]+", m.group(0).lower()):
            if w == "double":
                mult = 2
            elif w == "triple":
                mult = 3
            elif w in _DIGIT_WORDS:
                out.append(_DIGIT_WORDS[w] * mult)
                mult = 1
        return "".join(out)

    if _DIGIT_HOMOPHONE.search(text):
        text = _DIGIT_HOMOPHONE.sub(lambda m: m.group(1) + m.group(2) + _HOMOPHONE_DIGIT[m.group(3).lower()], text)
    return _DIGIT_WORD_RUN.sub(repl, text)


def clean_id(raw: str) -> str:
    """Keep the identifier as said, only dropping the separators of digit-by-digit speech."""
    s = raw.strip(" ,.-")
    if re.fullmatch(r"\d(?:(?:,\s|\s|-)\d)+", s):
        return re.sub(r"\D", "", s)
    return re.sub(r"\s+", " ", s)


def _words(s: str) -> list[str]:
    return s.split()


def clip_words(s: str, max_words: int) -> str:
    w = _words(s)
    return s if len(w) <= max_words else " ".join(w[:max_words]).rstrip(",;:") + "…"


def window(s: str, m: re.Match[str], max_words: int = FACT_MAX_WORDS) -> str:
    """The sentence if short, else max_words around the match (verbatim)."""
    w = _words(s)
    if len(w) <= max_words:
        return s
    before = len(_words(s[: m.start()]))
    start = max(0, min(before - max_words // 3, len(w) - max_words))
    piece = " ".join(w[start : start + max_words])
    return ("…" if start else "") + piece + ("…" if start + max_words < len(w) else "")


_PRONOUNS = [
    (r"\bI'm\b", "they're"),
    (r"\bI am\b", "they are"),
    (r"\bI've\b", "they've"),
    (r"\bI'd\b", "they'd"),
    (r"\bI'll\b", "they'll"),
    (r"\bI was\b", "they were"),
    (r"\bI wasn't\b", "they weren't"),
    (r"\bI\b", "they"),
    (r"\bmy\b", "their"),
    (r"\bMy\b", "Their"),
    (r"\bme\b", "them"),
    (r"\bmyself\b", "themselves"),
    (r"\bmine\b", "theirs"),
    # "we"/"our" in a caller's speech is the caller's household or company
    (r"\bwe're\b", "they're"),
    (r"\bwe've\b", "they've"),
    (r"\bwe\b", "they"),
    (r"\bWe\b", "They"),
    (r"\bour\b", "their"),
    (r"\bOur\b", "Their"),
    (r"\bus\b", "them"),
]


def third_person(s: str) -> str:
    for pat, rep in _PRONOUNS:
        s = re.sub(pat, rep, s)
    return s


# --- speech-to-text noise -------------------------------------------------------------------------

FILLERS = re.compile(
    r"(?:^|(?<=[\s,]))(?:um+|uh+|erm|hmm+|mm+|uh-huh)\b[,.]?\s*|(?<!\bdo)(?<!\bdid),?\s+you know\b,?", re.I
)
REPEATED_WORDS = re.compile(r"\b(\w+(?:'\w+)?(?:\s+\w+(?:'\w+)?)?)(?:,?\s+\1\b)+", re.I)
_KEEP_REPEAT = re.compile(
    r"^(?:\d+|zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple|no|very|bye)$", re.I
)
# "O-K-A-F-O-R", "O K A F O R": a caller spelling a word letter by letter.
SPELLED = re.compile(r"\b[A-Z](?:(?:-|\s|,\s|\.\s?)[A-Z]){2,}\b")


_COUNT_NUMBER = re.compile(r"\b(my|the|your|our|their|this) count (number|no\.?|is)\b", re.I)


def denoise(text: str) -> str:
    """Drop fillers and stuttered repeats ("I I was uh charged charged" → "I was charged"), join
    spelled letters into a word, and undo one homophone speech-to-text makes of an identifier's name
    ("my count number" → "my account number"); nothing else is changed."""
    text = FILLERS.sub(lambda m: " " if m.group(0).lstrip(", ").lower().startswith("you") else "", text)
    # Digits are never stutters: "four four seven one" is an account number.
    text = REPEATED_WORDS.sub(lambda m: m.group(0) if _KEEP_REPEAT.match(m.group(1)) else m.group(1), text)
    text = SPELLED.sub(lambda m: re.sub(r"[^A-Z]", "", m.group(0)).capitalize(), text)
    text = _COUNT_NUMBER.sub(r"\1 account \2", text)  # Whisper's "my count number" on WebRTC audio
    return re.sub(r"\s{2,}", " ", text).strip(" ,")


# --- what the call is about -----------------------------------------------------------------------

PROBLEM = re.compile(
    r"\b(?:not working|doesn't work|isn't working|stopped working|won't|can't|cannot|never|no longer|broken"
    r"|crash\w*|error|down|declined|locked out|charged|billed|overcharg\w*|wrong|missing|late|lost|damaged"
    r"|cracked|burst|accident|hacked|logged into|denied|expired|cancell?ed|slow|no signal|no internet|doubled"
    r"|don't recognize|dispute|drop\w*|problem|issue|blocked|stuck|leak\w*|fell|hurt|went up|still being"
    r"|damage\w*|nobody|no one|haven't heard|never came|keeps? \w+ing|higher than|more than usual|too (?:much|high)"
    r"|only have|running out|ran out|run out|hasn't|has not|didn't|did not|doesn't|does not|isn't|is not"
    r"|flicker\w*|goes black|black screen|frozen|freez\w*|won't turn on|no sound|beep\w*|overheat\w*)\b",
    re.I,
)
GREETING = re.compile(
    r"^(?:(?:hi|hello|hey|hola|bonjour|good (?:morning|afternoon|evening)|morning|yes|yeah|yep|sure|okay|ok|so|well"
    r"|right|fine|oh)\b[,.!]?\s*)+",
    re.I,
)
INTRO = re.compile(
    r"^(?i:my name is|my name's|name is|this is|it's|i'm|i am|me llamo|mi nombre es|je m'appelle)\s+"
    r"(?:(?:Mc|Mac|O')?[A-Z][\w'-]*\s*){1,3}(?i:here|speaking)?\s*(?:,|\band\b|\.|!|$|(?=I\b))\s*"
    r"|^(?:(?:Mc|Mac|O')?[A-Z][\w'-]*\s+){1,2}(?:here|speaking)\b[,.!]?\s*"
    r"|^(?:(?:Mc|Mac|O')?[A-Z][a-z'-]+\s+)(?:Mc|Mac|O')?[A-Z][a-z'-]+[.!]?$",
)
CALL_REASON_LEAD = re.compile(
    r"^(?:i'm calling (?:because|since|as)|i am calling because|i'm calling to say"
    r"|the problem is(?: that)?|the issue is(?: that)?|basically|so|but|and)\b\s*,?\s*",
    re.I,
)
PLEASANTRY = re.compile(
    r"^(?:thanks?|thank you|you're welcome|sorry|i'm sorry|i am sorry|i understand|of course|sure|okay|ok|got it"
    r"|no problem|take your time|one moment|great|perfect|wonderful|understood|hello|hi|good (?:morning|afternoon)"
    r"|that's (?:wonderful|great|lovely)|oh no)\b[^.?!]{0,60}[.!]?$"
    r"|\b(?:thanks for calling|thank you for calling|how (?:can|may) i help|this is \w+\.?$|speaking\.?$"
    r"|let me (?:transfer|look|check|see|compare)|transfer you|hold on|bear with me|you've reached"
    r"|(?:I|we) can help(?: you)? with (?:that|this)|(?:I|we) can do that)\b",
    re.I,
)

# --- question and answer across turns -----------------------------------------------------------------

ACTION_QUESTION = re.compile(
    r"^(?:(?:and|so|ok|okay),?\s+)?(?P<aux>have|did|has)\s+you\s+(?:already\s+|also\s+)?(?P<tried>tried\s+)?"
    r"(?P<act>[^?]+?)\s*\?$",
    re.I,
)
OFFER = re.compile(r"\b(?:I|we) can (?:offer(?: you)?|give you|do)\s+(?P<what>[^.?!]+)", re.I)
ANSWER_YES = re.compile(
    r"^(?:yes|yeah|yep|yup|sí|si|oui|correct|exactly|i did|i have|already)\b[,.!]?\s*(?P<detail>.*)$", re.I
)
ANSWER_NO = re.compile(r"^(?:no|nope|not yet|i haven't|i didn't|non)\b(?! problem)[,.!]?\s*(?P<detail>.*)$", re.I)
ANSWER_FILLER = re.compile(
    r"^(?:I did that|I did it|I did|I have|I've done that|I tried that|I tried|did that|done that)\b\s*,?\s*", re.I
)

# --- what the agent said ------------------------------------------------------------------------------

AGENT_COMMIT = re.compile(
    r"\b(?:I|we)\s*(?:can't|cannot|can not|can|could|won't|will|'ll|'ve|have|am not able to|'m not able to"
    r"|am unable to|'m unable to|'m going to|am going to|need|'d need|don't see|do not see|see|can see)\b"
    r"|\b(?:it says|there is|there's|that's|you have|your \w+ (?:is|was|covers|expired))\b"
    r"|\b(?:was|is|were) (?:cancell?ed|closed|shipped|delivered|received|stuck|blocked|estimated|missing|never)\b",
    re.I,
)
AGENT_LIMIT = re.compile(r"\b(?:can't|cannot|can not|won't|not able to|unable to|don't see|do not see)\b", re.I)
REPEAT_CONTACT = re.compile(
    r"\b(?:called (?:you |here |in )?(?:last|before|yesterday|twice|three times|again|earlier|\w+ times|already"
    r"|on (?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday))"
    r"|already called|(?:second|third|fourth|fifth) time|called last)\b",
    re.I,
)

_AGENT_VOICE = [
    (r"^[Ll]et me read (?:that |this |it )?back(?: what I have)?:?\s*", "Agent read back: "),
    (r"\b(but|and|so|then) (?:I|we)(?:'ll| will)\b", r"\1 the agent will"),
    (r"\b(but|and|so|then) (?:I|we)\b", r"\1 the agent"),
    (r"^(?:I|We) can see\b", "Agent sees"),
    (r"^(?:I|We) see\b", "Agent sees"),
    (r"^(?:I|We) don't see\b", "Agent does not see"),
    (r"^(?:I|We) can't\b", "Agent can't"),
    (r"^(?:I|We) cannot\b", "Agent cannot"),
    (r"^(?:I|We) can\b", "Agent can"),
    (r"^(?:I|We) could\b", "Agent could"),
    (r"^(?:I|We)(?: will|'ll)\b", "Agent will"),
    (r"^(?:I|We)(?: have|'ve)\b", "Agent has"),
    (r"^(?:I'm|We're|I am|We are)\b", "Agent is"),
    (r"^(?:I|We)\b", "Agent"),
    (r"\byou're\b", "they're"),
    (r"\byou've\b", "they've"),
    (r"\byou'd\b", "they'd"),
    (r"\b[Yy]ou (?=(?:are|have|had|can|could|will|would|need|should|were|did|do|get|got|paid|sent)\b)", "they "),
    (r"\byou\b", "them"),
    (r"\byour\b", "their"),
    (r"\bYour\b", "Their"),
    (r"\byourself\b", "themselves"),
    (r"\bmyself\b", "themselves"),
    (r"\bmy\b", "the"),
    (r"\bme\b", "the agent"),
]


def agent_voice(s: str) -> str:
    """An agent's sentence as a colleague reports it: "I can't refund over $50" → "Agent can't refund over $50"."""
    s = re.sub(r"^(?:(?:but|and|so|okay|ok|well|unfortunately|also),?\s+)+", "", s, flags=re.I)
    for pat, rep in _AGENT_VOICE:
        s = re.sub(pat, rep, s)
    return s[:1].upper() + s[1:]


def sentence_key(s: str) -> str:
    """What makes two sentences the same for de-duplication (case, punctuation and spacing ignored)."""
    return re.sub(r"[^0-9a-z$€£%]+", " ", s.lower()).strip()
