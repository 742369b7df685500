"""Deterministic, model-free call summarizer.

It extracts, never writes: every name, identifier, amount and date in the `CallSummary`
is copied from the transcript (key facts, the issue and what was tried are verbatim
excerpts). The only words it adds are fixed labels ("Caller", "Billing issue", "Wants") and
a first → third person rewrite ("I was charged" → "they were charged") in the brief.

The transcript is data: sentences that look like instructions to an AI ("ignore previous
instructions…") are excluded from every field, so they cannot steer the brief.

`ExtractionState` is incremental (`add(segments)` then `summary()`), which is what the
rolling summary uses: adding a delta costs only the new sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from functions.models import CallSummary, Identifier, TranscriptSegment
from functions.offline_patterns import (
    AGENT_NAME_PATTERNS,
    AMOUNT,
    ANGRY,
    ANSWER_NAME,
    BARE_NUMBER,
    CALLER_NAME_PATTERNS,
    CATEGORIES,
    COUNT,
    DATE,
    EMAIL,
    FACT_MAX_WORDS,
    FRUSTRATED,
    ID_AFTER_KW,
    ID_KIND_IN_QUESTION,
    INJECTION,
    LOWER_STOP,
    NAME_LOWER,
    NOT_NAMES,
    OUTCOME_WORDS,
    PHONE,
    POSITIVE,
    SENT_SPLIT,
    TRIED,
    WANT,
    WANT_LEAD,
    clean_id,
    clip_words,
    digits_view,
    is_caller,
    third_person,
    window,
)

BRIEF_MAX_WORDS = 40
MAX_FACTS = 8
MAX_TRIED = 4
INJECTION_NOTE = "Some of the caller's speech was addressed to an automated system and was left out of this summary."


@dataclass
class _Sentence:
    idx: int
    text: str
    caller: bool
    injection: bool


@dataclass
class ExtractionState:
    """Everything extracted so far; `add` is incremental, `summary` is cheap."""

    sentences: list[_Sentence] = field(default_factory=list)
    caller_name: str | None = None
    name_rank: int = 99
    identifiers: list[Identifier] = field(default_factory=list)
    facts: list[tuple[int, str, str]] = field(default_factory=list)  # (sentence idx, excerpt, matched token)
    tried: list[str] = field(default_factory=list)
    category_scores: dict[str, int] = field(default_factory=dict)
    category_first: dict[str, int] = field(default_factory=dict)
    want: tuple[int, int, str, str] | None = None  # (score, idx, lead, rest)
    angry: int = 0
    frustrated: int = 0
    positive: int = 0
    injection_seen: bool = False
    last_agent_text: str = ""
    pending_name_question: bool = False

    def add(self, segments: list[TranscriptSegment]) -> None:
        for seg in segments:
            caller = is_caller(seg.speaker)
            for raw in SENT_SPLIT.split(seg.text.strip()):
                text = raw.strip()
                if text:
                    self._add_sentence(text, caller)
            if not caller:
                self.last_agent_text = seg.text
                self.pending_name_question = bool(re.search(r"\b(?:your|the) (?:full )?name\b", seg.text, re.I))

    # --- per sentence -----------------------------------------------------------------------

    def _add_sentence(self, text: str, caller: bool) -> None:
        s = _Sentence(len(self.sentences), text, caller, bool(INJECTION.search(text)))
        self.sentences.append(s)
        if s.injection:  # instructions are not facts; only identifiers (plain values) are kept from them
            self.injection_seen = True
            self._identifiers(text, caller)
            return
        if caller:
            self._names(text)
        else:
            for pat in AGENT_NAME_PATTERNS:
                m = pat.search(text)
                if m:
                    self._set_name(m.group(1), 3)
        self._identifiers(text, caller)
        if caller or not text.endswith("?"):  # an agent's question states no fact
            self._facts(s)
        if TRIED.search(text) and len(self.tried) < MAX_TRIED and not text.endswith("?"):
            self.tried.append(clip_words(text, FACT_MAX_WORDS))
        if caller:
            self._caller_signals(s)

    def _set_name(self, name: str, rank: int) -> None:
        words = [w for w in name.split() if w.strip(".") not in NOT_NAMES or w in ("Mr.", "Mrs.", "Ms.", "Miss")]
        while words and words[-1].strip(".") in NOT_NAMES:
            words.pop()
        if not words or all(w in ("Mr.", "Mrs.", "Ms.", "Miss") for w in words):
            return
        if words[0] != name.split()[0]:  # the first word was not a name ("I'm Calling …")
            return
        if rank < self.name_rank or (rank == self.name_rank and len(words) > len((self.caller_name or "").split())):
            self.caller_name = " ".join(words)
            self.name_rank = rank

    def _names(self, text: str) -> None:
        for rank, pat in enumerate(CALLER_NAME_PATTERNS):
            m = pat.search(text)
            if m:
                self._set_name(m.group(1), rank)
        m = NAME_LOWER.search(text)
        if m and self.caller_name is None:
            words = []
            for w in m.group(1).split():
                if w in LOWER_STOP:
                    break
                words.append(w)
            if words:
                self._set_name(" ".join(w.capitalize() for w in words), 1)
        if self.pending_name_question:
            m = ANSWER_NAME.match(text)
            if m:
                self._set_name(m.group(1), 2)
            self.pending_name_question = False

    def _add_id(self, kind: str, value: str) -> None:
        value = clean_id(value)
        digits = re.sub(r"\D", "", value)
        if kind != "email" and len(digits) < 3:
            return
        for ident in self.identifiers:
            if re.sub(r"\W", "", ident.value) == re.sub(r"\W", "", value):
                if ident.kind == "other" and kind != "other":
                    ident.kind = kind  # type: ignore[assignment]
                return
        self.identifiers.append(Identifier(kind=kind, value=value))  # type: ignore[arg-type]

    def _identifiers(self, text: str, caller: bool) -> None:
        view = digits_view(text)
        taken: list[tuple[int, int]] = []
        for m in EMAIL.finditer(view):
            self._add_id("email", m.group(0))
            taken.append(m.span())
        for kind, pat in ID_AFTER_KW:
            for m in pat.finditer(view):
                span = m.span("id")
                if any(a <= span[0] < b for a, b in taken):
                    continue
                if AMOUNT.match(view, span[0]) or DATE.match(view, span[0]):
                    continue
                self._add_id(kind, m.group("id"))
                taken.append(span)
        for m in PHONE.finditer(view):
            if not any(a <= m.start() < b for a, b in taken):
                self._add_id("phone", m.group(0))
                taken.append(m.span())
        if not caller:
            return
        # A bare number answering the agent's question ("What's your order number?" "It's 88213.")
        asked = [k for k, pat in ID_KIND_IN_QUESTION if pat.search(self.last_agent_text)]
        for m in BARE_NUMBER.finditer(view):
            if any(a <= m.start() < b for a, b in taken) or DATE.search(m.group(0)):
                continue
            around = view[max(0, m.start() - 1) : m.end() + 9]
            if AMOUNT.search(around) or re.fullmatch(r"(?:19|20)\d\d", m.group(0).strip()):
                continue
            kind = asked[0] if asked else ("other" if len(re.sub(r"\D", "", m.group(0))) >= 5 else "")
            if kind:
                self._add_id(kind, m.group(0))

    def _facts(self, s: _Sentence) -> None:
        for pat in (AMOUNT, DATE, COUNT):
            for m in pat.finditer(s.text):
                token = m.group(0)
                if any(t.lower() == token.lower() and i == s.idx for i, _, t in self.facts):
                    continue
                self.facts.append((s.idx, window(s.text, m), token))

    def _caller_signals(self, s: _Sentence) -> None:
        text = s.text
        for name, pat in CATEGORIES:
            hits = len(pat.findall(text))
            if hits:
                self.category_scores[name] = self.category_scores.get(name, 0) + hits
                self.category_first.setdefault(name, s.idx)
        leads = list(WANT_LEAD.finditer(text))
        english = [m for m in leads if not m.group(0).lower().startswith(("quiero", "necesito"))]
        m = WANT.match(text, (english or leads)[0].start()) if leads else None
        if m:
            rest = m.group("rest").strip()
            score = (3 if m.group("lead").lower().startswith(("i", "quiero", "necesito")) else 2) + (
                2 if OUTCOME_WORDS.search(rest) else 0
            )
            if len(rest.split()) >= 1 and (self.want is None or score >= self.want[0]):
                self.want = (score, s.idx, m.group("lead"), rest)
        self.angry += len(ANGRY.findall(text)) + (
            1 if len(re.findall(r"\b[A-Z]{3,}\b", text)) >= 2 or "!!" in text else 0
        )
        self.frustrated += len(FRUSTRATED.findall(text))
        self.positive += len(POSITIVE.findall(text))

    # --- summary ---------------------------------------------------------------------------------

    def _issue(self) -> tuple[str, str, str]:
        """(category, verbatim sentence, third-person short form)."""
        caller = [s for s in self.sentences if s.caller and not s.injection]
        if not self.category_scores:
            for s in caller:
                if len(s.text.split()) >= 4 and not CALLER_NAME_PATTERNS[0].search(s.text):
                    return "", s.text, s.text
            return "", "", ""
        cat = max(self.category_scores, key=lambda c: (self.category_scores[c], -self.category_first[c]))
        pat = dict(CATEGORIES)[cat]
        candidates = [s for s in caller if pat.search(s.text)]
        not_tried = [s for s in candidates if not TRIED.search(s.text)]
        best = max(
            not_tried or candidates,
            key=lambda s: (
                len(pat.findall(s.text)) + (1 if AMOUNT.search(s.text) or COUNT.search(s.text) else 0),
                len(s.text),
                -s.idx,
            ),
        )
        return cat, best.text, best.text

    def _sentiment(self) -> str:
        if not any(s.caller for s in self.sentences):
            return "unknown"
        if self.angry >= 2:
            return "angry"
        if self.angry or self.frustrated >= 2:
            return "frustrated"
        if self.positive >= 2:
            return "positive"
        return "neutral"

    def _want_phrase(self) -> tuple[str, str]:
        """(requested_outcome verbatim, brief form)."""
        if self.want is None:
            return "", ""
        _, idx, lead, rest = self.want
        verbatim = self.sentences[idx].text
        rest = rest.rstrip(" .!?")
        low = lead.lower()
        if low in ("can you", "could you"):
            brief = f"Asks you to {third_person(rest)}"
        elif low in ("can i", "can we"):
            brief = f"Asks to {third_person(rest)}"
        elif low == "i need":
            brief = f"Needs {third_person(rest)}"
        elif low in ("i'm calling to",):
            brief = f"Wants to {third_person(rest)}"
        else:
            brief = f"Wants {third_person(rest)}"
        return clip_words(verbatim, FACT_MAX_WORDS), brief

    def summary(self, source: str = "offline") -> CallSummary:
        category, issue_sentence, _ = self._issue()
        issue = f"{category}: {issue_sentence}" if category and issue_sentence else issue_sentence
        issue = clip_words(issue, FACT_MAX_WORDS + 2)
        requested, want_brief = self._want_phrase()
        facts = self._key_facts()
        if self.injection_seen:
            facts.append(INJECTION_NOTE)
        sentiment = self._sentiment()
        summary = CallSummary(
            caller_name=self.caller_name,
            identifiers=list(self.identifiers),
            issue=issue,
            key_facts=facts,
            already_tried=list(self.tried),
            sentiment=sentiment,  # type: ignore[arg-type]
            requested_outcome=requested,
            source=source,  # type: ignore[arg-type]
        )
        summary.brief = compose_brief(summary, category, issue_sentence, want_brief, bool(self.sentences))
        return summary

    def _key_facts(self) -> list[str]:
        out: list[str] = []
        covered: set[str] = set()
        for _, excerpt, token in self.facts:
            if token.lower() in covered:
                continue
            if excerpt not in out:
                if len(out) >= MAX_FACTS:
                    excerpt = token  # keep every amount and date, tersely, once the list is long
                out.append(excerpt)
            covered.update(t.lower() for _, e, t in self.facts if e == excerpt or t == excerpt)
            covered.add(token.lower())
        return out


def compose_brief(
    summary: CallSummary, category: str, issue_sentence: str, want_brief: str, had_speech: bool = True
) -> str:
    """A spoken handoff of at most BRIEF_MAX_WORDS words, built only from extracted facts."""
    if not had_speech:
        return "No conversation was captured before this transfer."
    head = f"Caller {summary.caller_name}" if summary.caller_name else "Caller, name not given"
    ids = [f"{i.kind} {i.value}" if i.kind not in ("other", "email", "phone") else i.value for i in summary.identifiers]
    parts = [head + (", " + ", ".join(ids[:2]) if ids else "") + "."]
    requested = summary.requested_outcome.rstrip("…")
    if issue_sentence and requested and issue_sentence.startswith(requested):
        if category:  # the issue *is* the request: say it once
            parts.append(f"{category} request.")
    elif issue_sentence:
        label = f"{category} issue: " if category else "Says: "
        parts.append(label + third_person(issue_sentence.rstrip(" .!?")) + ".")
    if want_brief:
        parts.append(want_brief + ".")
    if summary.sentiment in ("angry", "frustrated"):
        parts.append(f"Caller is {summary.sentiment}.")
    if summary.already_tried and summary.already_tried[0].rstrip("…") not in issue_sentence:
        parts.append("Already tried: " + third_person(summary.already_tried[0].rstrip(" .!?")) + ".")
    return fit_words(parts, BRIEF_MAX_WORDS)


def fit_words(parts: list[str], limit: int) -> str:
    """Join parts within `limit` words: the first part whole, then each part clipped to what is left."""
    out: list[str] = []
    left = limit
    for i, p in enumerate(parts):
        n = len(p.split())
        if n <= left:
            out.append(p)
            left -= n
        elif i == 0 or left >= 4:
            out.append(clip_words(p, left).rstrip(".") + ".")
            left = 0
        if left <= 0:
            break
    return " ".join(out)
