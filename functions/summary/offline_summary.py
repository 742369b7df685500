"""Deterministic, model-free call summarizer for the warm hand-off.

It extracts, never writes: every name, identifier, amount and date in the `CallSummary` is copied
from the transcript (or from the name the caller typed). The words it adds are fixed labels
("Already tried", "Agent can't", "Wants") and a first → third person rewrite ("I was charged" →
"they were charged"; an agent's "I can't refund over $50" → "Agent can't refund over $50").

What a receiving agent needs is read across turns, the way a colleague would retell the call:
- the issue is the caller's problem, never a greeting or the turn where they give their name;
- an agent's yes/no question and the caller's answer make one fact ("Have you reinstalled the app?"
  "Yes, two times, same error." → already tried "reinstalled the app, two times, same error");
- what the agent found, promised or could not do; offers the caller declined; repeat contacts;
- a name the caller typed wins over how speech-to-text spelled it, and the spoken variants are
  replaced by it everywhere; a spelled-out name ("O-K-A-F-O-R") corrects the spoken one;
- speech-to-text noise (fillers, stutters, a sentence looping) is dropped before anything is read.

The transcript is data: sentences that look like instructions to an AI ("ignore previous
instructions…") are excluded from every field, so they cannot steer the brief.

`ExtractionState` is incremental (`add(segments)` then `summary()`), which is what the rolling
summary uses: adding a delta costs only the new sentences (microseconds to a millisecond or two).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from functions.models import CallSummary, Identifier, TranscriptSegment
from functions.summary.offline_patterns import (
    ACTION_QUESTION,
    AGENT_COMMIT,
    AGENT_LIMIT,
    AGENT_NAME_PATTERNS,
    AMOUNT,
    ANGRY,
    ANSWER_FILLER,
    ANSWER_NAME,
    ANSWER_NO,
    ANSWER_YES,
    BARE_NUMBER,
    CALL_REASON_LEAD,
    CALLER_NAME_PATTERNS,
    CATEGORIES,
    COUNT,
    DATE,
    EMAIL,
    FACT_MAX_WORDS,
    FRUSTRATED,
    GREETING,
    ID_AFTER_KW,
    ID_KIND_IN_QUESTION,
    INJECTION,
    INTRO,
    LOWER_STOP,
    NAME_LOWER,
    NOT_NAMES,
    OFFER,
    OUTCOME_WORDS,
    PHONE,
    PLEASANTRY,
    POSITIVE,
    PROBLEM,
    REPEAT_CONTACT,
    SENT_SPLIT,
    SPELLED,
    TRIED,
    WANT,
    WANT_LEAD,
    agent_voice,
    clean_id,
    clip_words,
    denoise,
    digits_view,
    is_caller,
    sentence_key,
    third_person,
)

__all__ = [
    "BRIEF_MAX_WORDS",
    "INJECTION",
    "INJECTION_NOTE",
    "ExtractionState",
    "compose_brief",
    "digits_view",
    "fit_words",
    "third_person",
]

BRIEF_MAX_WORDS = 40
MAX_FACTS = 8
MAX_TRIED = 4
INJECTION_NOTE = "Some of the caller's speech was addressed to an automated system and was left out of this summary."
NO_CONVERSATION = "No conversation was captured before this transfer."
NO_CALLER_SPEECH = "No speech from the caller was captured before this transfer."

_IMPERATIVE = re.compile(
    r"^(?:then|so|okay|ok|just)?,?\s*(?P<rest>(?:put|transfer|connect|get|send|give|cancel|refund|remove|reset|call|"
    r"fix|close|escalate)\s+(?:me|it|us|them|the|my|this|that|a|an|someone)\b.+)$",
    re.I,
)
_ASKED_FOR = re.compile(
    r"^(?:(?:and|so|ok|okay),?\s+)?(?:what's|what is|can i have|may i have|could i have|can i get)\s+(?:your|the)\s+"
    r"(?P<what>[\w\s'-]{3,30}?)(?:\s+please)?\s*\?$",
    re.I,
)
_ID_LEAD = re.compile(
    r"\b(?:account|order|ticket|case|invoice|policy|claim|member(?:ship)?|reference|confirmation|customer|tracking"
    r"|phone|prescription|serial|licen[cs]e)\s+(?:number|no\.?|id|code|key)?\s*(?:is|was)?[\s,.:…-]*$",
    re.I,
)
CODE = re.compile(r"\b[A-Z]{1,5}-?\d[\dA-Z-]*\d\b")
CORRECTION = re.compile(r"^(?:no|sorry|actually|wait)\b|\b(?:I mean|correction|sorry, it's|not \d)", re.I)
# Typed names that are not a person's name (the lobby's defaults, test labels).
_GENERIC_TYPED = re.compile(r"^(?:caller|customer|guest|anonymous|unknown|test|user|me|n/?a)\b", re.I)
_TROUBLESHOOT = re.compile(
    r"^(?:re\w+|reset|unplug\w*|clear\w*|update\w*|check\w*|power\w*|turn\w*|tr(?:y|ied)|switch\w*|call\w*|contact\w*"
    r"|install\w*|uninstall\w*|delet\w*|log\w*|sign\w*|plug\w*|move\w*|enter\w*|type\w*|use\w*)\b",
    re.I,
)
_PARTICIPLE = re.compile(r"^\w+(?:ed|en|wn|ne)\b|^(?:done|made|sent|spoken|been|gone|had|tried|set|put|cut)\b", re.I)


def _typed_name(name: str | None) -> str | None:
    """The caller's typed name if it looks like a person's name (letters, 2-80 characters)."""
    if not name:
        return None
    name = " ".join(name.split())
    if not re.fullmatch(r"[^\W\d_](?:[^\W\d_]|[ .'’-]){1,79}", name) or _GENERIC_TYPED.match(name):
        return None
    return " ".join(w[:1].upper() + w[1:] for w in name.split())


@dataclass
class _Sentence:
    idx: int
    text: str
    caller: bool
    injection: bool
    duplicate: bool = False
    cut_off: bool = False  # the last sentence of an utterance cut mid-speech (see `_add_sentence`)
    intro: bool = False
    score: int = 0  # how much it reads like the caller's problem
    issue_text: str = ""  # the problem part of a sentence that also asks ("It arrived damaged, and I'd like…")


@dataclass
class _Fact:
    idx: int
    rank: int  # 0 is kept first when the list is long
    text: str
    key: str


@dataclass
class ExtractionState:
    """Everything extracted so far; `add` is incremental, `summary` is cheap.

    `known_name` is the name the caller typed when joining (optional): it is the caller's name in the
    summary, and speech-to-text spellings of it are replaced by it."""

    known_name: str | None = None
    sentences: list[_Sentence] = field(default_factory=list)
    caller_name: str | None = None
    name_rank: int = 99
    spoken_names: list[str] = field(default_factory=list)
    identifiers: list[Identifier] = field(default_factory=list)
    facts: list[_Fact] = field(default_factory=list)
    tried: list[tuple[int, str]] = field(default_factory=list)
    category_scores: dict[str, int] = field(default_factory=dict)
    category_first: dict[str, int] = field(default_factory=dict)
    want: tuple[int, int, str, str] | None = None  # (score, idx, lead, rest)
    repeat_contact: tuple[int, str] | None = None
    angry: int = 0
    frustrated: int = 0
    positive: int = 0
    injection_seen: bool = False
    last_agent_text: str = ""
    # A caller segment that ended on "my account number is": the digits came in the next segment (the
    # caller paused, and the segmenter cut the utterance there). It names their kind, as a question would.
    id_lead: str = ""
    pending_name_question: bool = False
    pending_question: str = ""  # the agent's last question, answered by the caller's next sentence
    pending_offer: tuple[int, str] | None = None  # (index in `facts`, what) of an offer not answered yet
    seen: set[str] = field(default_factory=set)
    id_labels: dict[str, str] = field(default_factory=dict)  # value → the word the caller used ("membership")
    # Each reading of an identifier → how often heard: (by the accurate model, by the fallback model).
    id_heard: dict[str, tuple[float, float]] = field(default_factory=dict)
    id_whole: set[str] = field(default_factory=set)  # readings heard at least once in a sentence that ended
    trailing: bool = False  # the sentence being read trails off ("My order 44177...", or no end at all)
    fallback: bool = False  # the segment being read came from the fallback speech-to-text model

    def __post_init__(self) -> None:
        self.known_name = _typed_name(self.known_name)
        if self.known_name:
            self.caller_name = self.known_name
            self.name_rank = -1

    def add(self, segments: list[TranscriptSegment]) -> None:
        for seg in segments:
            caller = is_caller(seg.speaker)
            text = seg.text.strip()
            sentences = [raw.strip() for raw in _sentences(text) if raw.strip()]
            self.fallback = seg.fallback
            for n, raw in enumerate(sentences, 1):
                clean = denoise(raw)
                if clean and re.search(r"\w", clean):
                    # Cut off mid-word: its last number may have run into the next word (a sentence
                    # Whisper ends with "..." or no stop at all, or the last one of an utterance the
                    # segmenter cut while the caller went on, which Whisper ends with a full stop
                    # all the same), so its readings count half.
                    cut_off = seg.cut and n == len(sentences)
                    self.trailing = raw.endswith(("...", "…")) or not raw.endswith((".", "!", "?")) or cut_off
                    self._add_sentence(clean, caller, raw, cut_off=cut_off)
            self.id_lead = m.group(0) if caller and (m := _ID_LEAD.search(denoise(text))) else ""
            if not caller:
                self.last_agent_text = text
                self.pending_name_question = bool(re.search(r"\b(?:your|the) (?:full )?name\b", text, re.I))

    # --- per sentence -----------------------------------------------------------------------

    def _add_sentence(self, text: str, caller: bool, raw: str, *, cut_off: bool = False) -> None:
        """`cut_off`: the last sentence of an utterance the segmenter cut while the speaker went on. Its
        end is what speech-to-text made of half a word ("My order 441 salmon arrives." for "... four
        four one seven arrived| damaged"), so only its names and identifiers (at half weight) are taken;
        it is never the issue, a fact, an ask or an answer, and it does not make the whole sentence,
        heard later, a repeat."""
        key = sentence_key(text)
        s = _Sentence(len(self.sentences), text, caller, bool(INJECTION.search(text)), key in self.seen, cut_off)
        if not cut_off:
            self.seen.add(key)
        self.sentences.append(s)
        if s.injection:  # instructions are not facts; only identifiers (plain values) are kept from them
            self.injection_seen = True
            self._identifiers(text, caller)
            return
        if caller:
            self._names(text, raw)
        else:
            for pat in AGENT_NAME_PATTERNS:
                m = pat.search(text)
                if m:
                    self._set_name(m.group(1), 3)
        self._identifiers(text, caller)
        if s.duplicate or cut_off:  # a looping sentence says nothing new; a cut-off one nothing sure
            return
        if caller:
            s.intro = _is_intro(text)
            self._answer(s)
            self._caller_sentence(s)
        else:
            self._agent_sentence(s)

    def _set_name(self, name: str, rank: int) -> None:
        words = [w for w in name.split() if w.strip(".") not in NOT_NAMES or w in ("Mr.", "Mrs.", "Ms.", "Miss")]
        while words and words[-1].strip(".") in NOT_NAMES:
            words.pop()
        if not words or all(w in ("Mr.", "Mrs.", "Ms.", "Miss") for w in words):
            return
        if words[0] != name.split()[0]:  # the first word was not a name ("I'm Calling …")
            return
        spoken = " ".join(words)
        if rank < 3 and spoken not in self.spoken_names:
            self.spoken_names.append(spoken)
        if rank < self.name_rank or (rank == self.name_rank and len(words) > len((self.caller_name or "").split())):
            self.caller_name = spoken
            self.name_rank = rank

    def _names(self, text: str, raw: str) -> None:
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
        m = re.match(r"^(?:Hi|Hello|Hey),?\s+([A-Z][a-z'-]+\s+(?:Mc|Mac|O')?[A-Z][a-z'-]+)\.$", text)
        if m and m.group(1).split()[0] not in NOT_NAMES:
            self._set_name(m.group(1), 2)
        spelled = SPELLED.search(raw)
        if spelled and self.spoken_names:
            self._spelled(re.sub(r"[^A-Z]", "", spelled.group(0)).capitalize())

    def _spelled(self, word: str) -> None:
        """A caller spelling a word after giving their name corrects the part of the name it resembles."""
        name = self.spoken_names[-1].split()
        similarity = [difflib.SequenceMatcher(None, part.lower(), word.lower()).ratio() for part in name]
        best = max(range(len(name)), key=lambda i: (similarity[i], i))
        if name[best] == word:
            return
        name[best] = word
        corrected = " ".join(name)
        self.spoken_names.append(corrected)
        if self.name_rank >= 0:  # a typed name still wins
            self.caller_name = corrected
            self.name_rank = -1

    def _add_id(self, kind: str, value: str, correction: bool = False, label: str = "") -> None:
        value = clean_id(value)
        if label:
            self.id_labels.setdefault(value, label)
        digits = re.sub(r"\D", "", value)
        if kind != "email" and len(digits) < 3:
            return
        flat = re.sub(r"\W", "", value)
        sure, rough = self.id_heard.get(flat, (0.0, 0.0))
        weight = 0.5 if self.trailing else 1.0
        self.id_heard[flat] = (sure, rough + weight) if self.fallback else (sure + weight, rough)
        if not self.trailing:
            self.id_whole.add(flat)
        for ident in self.identifiers:
            if re.sub(r"\W", "", ident.value) == flat:
                if ident.kind == "other" and kind != "other":
                    ident.kind = kind  # type: ignore[assignment]
                return
            old = re.sub(r"\W", "", ident.value)
            if ident.kind == kind and kind != "email" and _one_slip(old, flat):
                # The same number heard two ways in a repeated sentence ("441" / "4417", "44417" /
                # "4417"): one of them is the number (`_better`), and the summary keeps that one.
                if self._better(flat, old):
                    self.id_labels.setdefault(value, self.id_labels.get(ident.value, ""))
                    ident.value = value
                return
        if correction and self.identifiers:
            # "No, sorry, it's 5512-0087": the caller corrects the number just given (same length, mostly same digits).
            last = self.identifiers[-1]
            old = re.sub(r"\W", "", last.value)
            if len(old) == len(flat) and sum(a == b for a, b in zip(old, flat, strict=True)) >= len(old) // 2:
                last.value = value
                return
        self.identifiers.append(Identifier(kind=kind, value=value))  # type: ignore[arg-type]

    def _better(self, new: str, old: str) -> bool:
        """Whether `new` is a truer reading of an identifier than `old`, the two one slip apart.

        Measured on espeak speech of "my order four four one seven arrived damaged" (the browser
        test's until 2026-12-08) cut at 80 random points: base wrote the number "4417" 51 times in
        66; it lost the last digit into the next word or the cut 13 times ("441s have", "441 San",
        "441.") and added a digit once ("4441Severen"). tiny.en, the fallback model that transcribes
        while the worker is behind, never wrote "4417" in 40 cuts ("441 7", "441 cent", "for 41"). So:
        - the accurate model's readings rank above the fallback model's, however often those repeat;
        - a reading that is the other plus a last digit or two, heard in a sentence that ended (not one
          that trails off, or the cut-off end of an utterance), is the number: a digit at the end is
          dropped far more often than one is invented before more words;
        - otherwise the reading heard more often (a trailing sentence's counts half), then the longer."""
        heard_new, heard_old = self.id_heard[new], self.id_heard.get(old, (0.0, 0.0))
        if (heard_new[0] > 0) != (heard_old[0] > 0):
            return heard_new[0] > 0
        short, long_ = sorted((new, old), key=len)
        if long_ != short and long_.startswith(short) and long_ in self.id_whole:
            return new == long_
        return (heard_new, len(new)) > (heard_old, len(old))

    def _identifiers(self, text: str, caller: bool) -> None:
        view = digits_view(text)
        correction = caller and bool(CORRECTION.search(text))
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
                word = m.group(0).split()[0].strip(":#,").lower()
                self._add_id(kind, m.group("id"), correction, "ID" if word == "id" else word)
                taken.append(span)
        for m in PHONE.finditer(view):
            if not any(a <= m.start() < b for a, b in taken):
                self._add_id("phone", m.group(0))
                taken.append(m.span())
        if not caller:
            return
        # A bare number answering the agent's question ("What's your order number?" "It's 88213.")
        asking = self.id_lead or self.last_agent_text
        asked = [k for k, pat in ID_KIND_IN_QUESTION if pat.search(asking)]
        # The word the agent asked with labels an "other" identifier in the brief ("prescription RX-550127").
        named = next((m.group(0).lower() for _, p in ID_KIND_IN_QUESTION[-1:] if (m := p.search(asking))), "")
        label = named if asked and asked[0] == "other" and named != "number" else ""
        for m in BARE_NUMBER.finditer(view):
            if any(a <= m.start() < b for a, b in taken) or DATE.search(m.group(0)):
                continue
            around = view[max(0, m.start() - 1) : m.end() + 9]
            if AMOUNT.search(around) or re.fullmatch(r"(?:19|20)\d\d", m.group(0).strip()):
                continue
            if re.match(r"\s*(?:megabits?|mbps|gb|percent|times|minutes|seconds|hours|days)\b", view[m.end() :], re.I):
                continue
            if re.search(r"[A-Za-z]-?$", view[: m.start()]):  # the digits of a code ("C-40418"), read below
                continue
            kind = asked[0] if asked else ("other" if len(re.sub(r"\D", "", m.group(0))) >= 5 else "")
            if kind:
                self._add_id(kind, m.group(0), correction, label)
                taken.append(m.span())
        if asked:
            for m in CODE.finditer(view):
                if not any(a <= m.start() < b for a, b in taken):
                    self._add_id(asked[0], m.group(0), correction, label)

    # --- caller ------------------------------------------------------------------------------------

    def _answer(self, s: _Sentence) -> None:
        """The caller's first sentence after an agent's question answers it."""
        question, self.pending_question = self.pending_question, ""
        offer, self.pending_offer = self.pending_offer, None
        yes, no = ANSWER_YES.match(s.text), ANSWER_NO.match(s.text)
        if offer is not None and (yes or no):
            i, what = offer
            verb = "Declined the offer" if no else "Accepted the offer"
            self.facts[i].text = f"{verb}: {third_person(what)}"
            self.facts[i].rank = 0
            if no and (rest := no.group("detail").strip()):
                self._caller_sentence(_Sentence(s.idx, rest, True, False))  # "No thanks, I just want to cancel."
                s.intro = True
            return
        m = ACTION_QUESTION.match(question) if question else None
        if m and (yes or no):
            act = m.group("act").strip()
            tried_word = bool(m.group("tried"))
            detail = ANSWER_FILLER.sub("", (yes or no).group("detail")).strip(" .!")  # type: ignore[union-attr]
            if m.group("aux").lower() == "did" and not _TROUBLESHOOT.match(act):
                label = act[:1].upper() + act[1:]
                said = f", {third_person(detail)}" if detail else ""
                self._fact(s.idx, 2, f"{label}: {'yes' if yes else 'no'}{said}")
                s.intro = True
                return
            if tried_word and not re.match(r"\w+ing\b", act):
                act = "tried " + act
            elif m.group("aux").lower() == "did" and not _PARTICIPLE.match(act):
                act = "tried to " + act
            if no:
                said = f" ({third_person(detail)})" if detail else ""
                self._fact(s.idx, 0, f"Not tried yet: {third_person(act)}{said}")
                s.intro = True
                return
            if detail and TRIED.search(detail) and re.match(r"I\b", detail):  # "Yes, I restarted it twice."
                item = third_person(detail)
            else:
                item = third_person(act) + (f", {third_person(detail)}" if detail else "")
            self._add_tried(s.idx, item)
            s.intro = True  # the answer is recorded; it is not the issue
            return
        asked = _ASKED_FOR.match(question) if question else None
        if asked and not re.search(
            r"name|number|email|e-mail|phone|address|problem|issue|reference|code|\bid\b|ticket|order|account|policy"
            r"|claim|invoice|key|licen[cs]e|prescription|digits|serial|pin\b",
            asked.group("what"),
            re.I,
        ):
            answer = s.text.strip(" .!")
            if len(answer.split()) <= 6 and not yes and not no:  # "What's your date of birth?" "April 4th, 1958."
                what = asked.group("what").strip()
                self._fact(s.idx, 1, f"{what[:1].upper() + what[1:]}: {third_person(answer)}")
                s.intro = True
                return
        readback = re.match(
            r"^(?:(?:so|and|just to confirm),?\s+)?(?:is|are|was|that's|it's)\s+(?P<what>.+)\?$", question, re.I
        )
        if yes and readback and re.search(r"\d|\b[A-Z][a-z]", readback.group("what")[1:]):
            self._fact(
                s.idx, 1, f"Confirmed: {third_person(readback.group('what'))}"
            )  # "Is the address 12 Elm Street?"
            s.intro = True
            return
        if question and (yes or no):
            detail = (yes or no).group("detail").strip()  # type: ignore[union-attr]
            if len(detail.split()) >= 3 and (PROBLEM.search(detail) or AMOUNT.search(detail) or DATE.search(detail)):
                self._fact(s.idx, 2, third_person(detail))
                s.intro = True

    def _add_tried(self, idx: int, item: str) -> None:
        """One more thing the caller tried, unless it is one already told in other words (a looping
        sentence that speech-to-text heard differently each time: "emailed the seller" / "the cellar")."""
        item = clip_words(item, FACT_MAX_WORDS)
        if len(self.tried) < MAX_TRIED and not any(_similar(item, t) for _, t in self.tried):
            self.tried.append((idx, item))

    def _caller_sentence(self, s: _Sentence) -> None:
        text = s.text
        if TRIED.search(text) and not text.endswith("?") and not s.intro:
            self._add_tried(s.idx, third_person(_strip_lead(text)))
        if REPEAT_CONTACT.search(text) and self.repeat_contact is None:
            self.repeat_contact = (s.idx, clip_words(third_person(_strip_lead(text)), 14))
            self.frustrated += 1
        hits = 0
        for name, pat in CATEGORIES:
            n = len(pat.findall(text))
            if n:
                hits += n
                self.category_scores[name] = self.category_scores.get(name, 0) + n
                self.category_first.setdefault(name, s.idx)
        wanted = self._want(s)
        lead = WANT_LEAD.search(text) if wanted else None
        before = re.sub(r"[\s,;]*(?:\b(?:and|so|but)\b)?[\s,;]*$", "", text[: lead.start()]) if lead else ""
        if before and PROBLEM.search(before) and len(before.split()) >= 3 and not s.intro:
            s.issue_text, text, wanted = before, before, False  # the problem is stated before the ask
        if not s.intro:
            s.score = (
                2 * len(PROBLEM.findall(text))
                + hits
                + (1 if AMOUNT.search(text) or COUNT.search(text) else 0)
                - (3 if wanted else 0)
                - (1 if TRIED.search(text) and not PROBLEM.search(text) else 0)
                - (2 if text.endswith("?") else 0)
            )
            tokens = AMOUNT.search(text) or DATE.search(text) or COUNT.search(text)
            if not wanted and not s.issue_text and (s.score > 0 or tokens):
                rank = 1 if (AMOUNT.search(text) or DATE.search(text)) else 2
                self._fact(s.idx, rank, third_person(_strip_lead(text)))
            elif not wanted and not s.issue_text and not TRIED.search(text) and len(_strip_lead(text).split()) >= 5:
                # Anything else the caller described is kept, last, in the fields (not spoken in the brief).
                self._fact(s.idx, 3, third_person(_strip_lead(text)))
        self.angry += len(ANGRY.findall(text)) + (
            1 if len(re.findall(r"\b[A-Z]{3,}\b", text)) >= 2 or "!!" in text else 0
        )
        self.frustrated += len(FRUSTRATED.findall(text))
        self.positive += len(POSITIVE.findall(text))

    def _want(self, s: _Sentence) -> bool:
        text = s.text
        leads = list(WANT_LEAD.finditer(text))
        english = [m for m in leads if not m.group(0).lower().startswith(("quiero", "necesito"))]
        m = WANT.match(text, (english or leads)[0].start()) if leads else None
        if m:
            lead, rest = m.group("lead"), m.group("rest").strip()
            if not re.search(r"\w", rest):
                return False  # "I would like." (speech-to-text cut the sentence): no ask in it
            score = (3 if lead.lower().startswith(("i", "quiero", "necesito")) else 2) + (
                2 if OUTCOME_WORDS.search(rest) else 0
            )
        elif bare := re.match(r"^(want|need)\s+(.{3,})", text, re.I):  # dropped words: "Want technician or discount."
            lead, rest, score = bare.group(1), bare.group(2), 3
        elif (polite := re.match(r"^(.+?),?\s+please[.!]?$", text, re.I)) and len(polite.group(1).split()) <= 6:
            lead, rest, score = "", polite.group(1), 1  # "A replacement jar please."
        elif polite := re.search(r"\bplease\s+([a-z].{4,})$", text, re.I):
            lead, rest, score = "please", polite.group(1), 2  # "… please waive the fee."
        elif order := _IMPERATIVE.match(_strip_lead(text)):
            lead, rest, score = "please", order.group("rest"), 2  # "Then put me through to the credit team."
        else:
            return False
        # Only one ask is the requested outcome; the others stay as facts ("Can you ask Dr. Chen to renew it?").
        if self.want is None or score >= self.want[0]:
            if self.want is not None and not _similar(self.sentences[self.want[1]].text, text):
                old = self.sentences[self.want[1]].text
                self._fact(self.want[1], 1, third_person(_strip_lead(old)))
            self.want = (score, s.idx, lead, rest)
        elif not _similar(self.sentences[self.want[1]].text, text):  # the same ask again says nothing new
            self._fact(s.idx, 1, third_person(_strip_lead(text)))
        return True

    def _fact(self, idx: int, rank: int, text: str) -> int | None:
        text = text.strip()
        key = sentence_key(text)
        if not key:
            return None
        for i, f in enumerate(self.facts):
            if key in f.key:
                return i
            if f.key in key:  # the new one says more: keep it in the old one's place
                self.facts[i] = _Fact(f.idx, min(rank, f.rank), clip_words(text, FACT_MAX_WORDS), key)
                return i
        self.facts.append(_Fact(idx, rank, clip_words(text[:1].upper() + text[1:], FACT_MAX_WORDS), key))
        return len(self.facts) - 1

    # --- agent -----------------------------------------------------------------------------------

    def _agent_sentence(self, s: _Sentence) -> None:
        text = s.text
        if text.endswith("?"):
            self.pending_question = text
            return
        tokens = bool(AMOUNT.search(text) or DATE.search(text) or COUNT.search(text))
        if PLEASANTRY.search(text) and not tokens and not PROBLEM.search(text):
            return
        if re.match(r"^(?:let's|please|try|can you|go ahead)\b", text, re.I):  # instructions to the caller
            return
        if not (AGENT_COMMIT.search(text) or tokens or re.search(r"\b(?:need|requires?|covers?)\b", text, re.I)):
            return
        seen = re.match(r"^(?:I|we) (?:can )?see (.*)$", text, re.I)
        if seen and not tokens and len(re.findall(r"\b[a-z]{3,}", seen.group(1))) < 3:  # "I see the ticket, Ms. Lee."
            return
        rank = 0 if AGENT_LIMIT.search(text) or re.search(r"\b(?:I|we)(?:'ll| will)\b", text) else 1
        i = self._fact(s.idx, rank, agent_voice(text))
        offer = OFFER.search(text)
        if i is not None and offer:
            self.pending_offer = (i, offer.group("what").strip())

    # --- summary ---------------------------------------------------------------------------------

    def display(self, text: str) -> str:
        """Replace speech-to-text spellings of the caller's name with the name the summary uses."""
        name = self.caller_name
        if not name or not text:
            return text
        target = name.split()
        for spoken in self.spoken_names:
            if spoken == name or not _same_person(spoken, name):
                continue  # a different name ("calling for my wife, Jane") is left as said
            text = text.replace(spoken, name)
            words = spoken.split()
            if len(words) == len(target):
                for a, b in zip(words, target, strict=True):
                    if a != b and len(a) > 2:
                        text = re.sub(rf"\b{re.escape(a)}\b", b, text)
        return text

    def _issue(self) -> _Sentence | None:
        caller = [s for s in self.sentences if s.caller and not (s.injection or s.duplicate or s.cut_off)]
        scored = [s for s in caller if s.score > 0]
        if scored:
            best = max(scored, key=lambda s: (s.score, -s.idx))
            # The same sentence heard again, its numbers now the identifiers as read (a digit it dropped
            # the first time): that reading of it.
            ids = [re.sub(r"\W", "", i.value) for i in self.identifiers]
            exact = [
                s
                for s in scored
                if _similar(s.text, best.text)
                and (runs := re.findall(r"\d[\d-]*\d", digits_view(s.text)))
                and all(re.sub(r"\D", "", r) in ids for r in runs)
            ]
            return exact[0] if exact else best
        for s in caller:
            if not s.intro and len(_strip_lead(s.text).split()) >= 3 and not POSITIVE.search(s.text):
                return s
        return None

    def _sentiment(self) -> str:
        if not any(s.caller and not _is_filler_only(s.text) for s in self.sentences):
            return "unknown"
        if self.angry >= 2:
            return "angry"
        if self.angry or self.frustrated >= 2:
            return "frustrated"
        if self.positive >= 2:
            return "positive"
        return "neutral"

    def want_brief(self) -> str:
        """What the caller asked for, as the brief says it ("Wants a refund of the duplicate charge")."""
        return self.display(self._want_phrase()[1])

    def _want_phrase(self) -> tuple[str, str]:
        """(requested_outcome, brief form)."""
        if self.want is None:
            return "", ""
        _, idx, lead, rest = self.want
        verbatim = self.sentences[idx].text
        rest = re.sub(r",?\s*(?:please|s'il vous plaît|por favor)$", "", rest.rstrip(" .!?"), flags=re.I)
        rest = third_person(re.sub(r"^(A|An|The)\b", lambda m: m.group(1).lower(), rest))
        low = lead.lower()
        if low in ("can you", "could you", "please"):
            brief = f"Asks you to {rest}"
        elif low in ("can i", "can we"):
            brief = f"Asks to {rest}"
        elif low in ("i need", "need", "necesito"):
            brief = f"Needs {rest}"
        else:
            brief = f"Wants {rest}"
        return clip_words(_strip_lead(verbatim), FACT_MAX_WORDS), brief

    def summary(self, source: str = "offline") -> CallSummary:
        issue_s = self._issue()
        issue = _short(issue_s.issue_text or issue_s.text) if issue_s else ""
        requested, want_brief = self._want_phrase()
        issue_idx = issue_s.idx if issue_s else -1
        want_idx = self.want[1] if self.want else -2
        facts = self._key_facts(issue_idx, want_idx)
        tried = [t for i, t in self.tried if i != issue_idx]
        if self.injection_seen:
            facts.append(INJECTION_NOTE)
        d = self.display
        summary = CallSummary(
            caller_name=self.caller_name,
            identifiers=[i.model_copy() for i in self.identifiers],
            issue=d(issue),
            key_facts=[d(f) for f in facts],
            already_tried=[d(t) for t in tried],
            sentiment=self._sentiment(),  # type: ignore[arg-type]
            requested_outcome=d(requested),
            source=source,  # type: ignore[arg-type]
        )
        if not self.sentences:
            summary.brief = NO_CONVERSATION
            return summary
        if summary.sentiment == "unknown" and not summary.identifiers:
            summary.brief = NO_CALLER_SPEECH
            summary.key_facts = [f for f in summary.key_facts if f != INJECTION_NOTE] or summary.key_facts
            return summary
        agent_fact = next((f.text for f in self.facts if f.rank == 0 and f.idx not in (issue_idx, want_idx)), "")
        repeat = ""
        if self.repeat_contact and self.repeat_contact[0] not in (issue_idx, *(i for i, _ in self.tried)):
            repeat = self.repeat_contact[1]
        told = {issue_idx, want_idx, *(i for i, _ in self.tried), self.repeat_contact[0] if self.repeat_contact else -3}
        new = sorted(self._new_facts(issue_idx, want_idx), key=lambda f: (f.rank, f.idx))
        extra = [f.text for f in new if f.idx not in told and f.rank < 3]
        said = _content_words(" ".join([issue, want_brief, agent_fact, *tried[:2]]))
        extra = [d(f) for f in extra if f != agent_fact and not _mostly_said(f, said)][:2]
        summary.brief = compose_brief(
            summary,
            issue="" if issue_idx == want_idx and not (issue_s and issue_s.issue_text) else d(issue),
            want=d(want_brief),
            tried=[d(t) for t in tried[:2]],
            agent=d(agent_fact),
            repeat=d(repeat),
            extra=extra,
            labels=self.id_labels,
        )
        return summary

    def _new_facts(self, issue_idx: int, want_idx: int) -> list[_Fact]:
        """The facts the issue, the ask and "Tried" do not already say, in those words or others (a
        looping sentence heard differently each time)."""
        told = [t for _, t in self.tried] + ([self.sentences[issue_idx].text] if issue_idx >= 0 else [])
        return [
            f
            for f in self.facts
            if f.idx not in (issue_idx, want_idx)
            and not any(f.key in sentence_key(t) or sentence_key(t) in f.key or _similar(f.text, t) for t in told)
        ]

    def _key_facts(self, issue_idx: int, want_idx: int) -> list[str]:
        facts = self._new_facts(issue_idx, want_idx)
        if len(facts) > MAX_FACTS:
            keep = sorted(facts, key=lambda f: (f.rank, f.idx))[:MAX_FACTS]
            facts = [f for f in facts if f in keep]
        out = [f.text for f in facts]
        said = [*out, *(t for _, t in self.tried)]
        if self.repeat_contact and not any(sentence_key(self.repeat_contact[1]) in sentence_key(t) for t in said):
            out.insert(0, "Repeat contact: " + self.repeat_contact[1])
        return out


MAX_SENTENCE_WORDS = 60


def _sentences(text: str) -> list[str]:
    """Sentences of a segment; a run-on one (speech-to-text without punctuation) is cut every
    MAX_SENTENCE_WORDS words so the per-sentence patterns stay cheap on any input."""
    out = []
    for sentence in SENT_SPLIT.split(text):
        words = sentence.split()
        if len(words) <= MAX_SENTENCE_WORDS:
            out.append(sentence)
        else:
            out += [" ".join(words[i : i + MAX_SENTENCE_WORDS]) for i in range(0, len(words), MAX_SENTENCE_WORDS)]
    return out


def _similar(a: str, b: str) -> bool:
    """Two sentences say the same thing in other words (speech-to-text heard one sentence two ways)."""
    ka, kb = sentence_key(third_person(a)), sentence_key(third_person(b))
    return bool(ka and kb) and difflib.SequenceMatcher(None, ka, kb).ratio() >= 0.75


def _one_slip(a: str, b: str) -> bool:
    """One identifier is the other with its last one or two characters missing ("441" / "4417"), or
    with one character missing anywhere ("4417" / "44417": speech-to-text doubled a digit)."""
    short, long_ = sorted((a, b), key=len)
    if len(short) < 3:
        return False
    if 0 < len(long_) - len(short) <= 2 and long_.startswith(short):
        return True
    return len(long_) - len(short) == 1 and any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _same_person(spoken: str, name: str) -> bool:
    """Whether a name heard in the call is a speech-to-text spelling of `name` (a shared part, or close)."""
    a, b = spoken.lower().split(), name.lower().split()
    return bool(set(a) & set(b)) or difflib.SequenceMatcher(None, " ".join(a), " ".join(b)).ratio() >= 0.6


def _strip_lead(text: str) -> str:
    """The sentence without its greeting, self-introduction or "I'm calling because" lead-in."""
    prev = None
    while prev != text:
        prev = text
        text = GREETING.sub("", text)
        text = INTRO.sub("", text)
        text = CALL_REASON_LEAD.sub("", text)
    return text.strip() or prev


def _short(text: str) -> str:
    """The issue as a colleague says it: third person, lead-ins dropped, capitalized."""
    t = _strip_lead(text)
    about = re.match(r"^(?:i'm calling|i am calling|it's|this is|it is) about\s+", t, re.I)
    t = third_person(digits_view("Calling about " + t[about.end() :] if about else t)).rstrip(" .!?")
    t = clip_words(t, FACT_MAX_WORDS)
    return t[:1].upper() + t[1:]


_ID_PHRASE = re.compile(
    r"\b(?:(?:my|the|your)\s+)?(?:account|order|ticket|case|invoice|policy|claim|membership|customer|patient|employee"
    r"|booking|reference|phone|member|card)?\s*(?:number|no\.?|id|reference)?\s*(?:is|es|:)?\s*"
    r"(?:[A-Z]{1,5}-?\d[\dA-Z-]*\d|\d[\d\s,-]*\d|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
    re.I,
)


def _is_intro(text: str) -> bool:
    """A turn that only greets, gives a name or reads out a number: never the issue."""
    rest = _ID_PHRASE.sub(" ", digits_view(_strip_lead(text)))
    rest = GREETING.sub("", rest.strip(" ,.!"))
    if INTRO.match(text) and len(rest.split()) < 3:
        return True
    return len(re.findall(r"[A-Za-zÀ-ÿ']{2,}", rest)) < 2


def _content_words(text: str) -> set[str]:
    return {
        w for w in re.findall(r"[a-z0-9$€£.,]{4,}", text.lower()) if w not in ("they", "their", "them", "wants", "want")
    }


def _mostly_said(fact: str, said: set[str]) -> bool:
    """A fact whose content words are mostly in the brief already adds nothing spoken."""
    words = _content_words(fact)
    return bool(words) and len(words & said) * 2 >= len(words)


def _is_filler_only(text: str) -> bool:
    return not re.search(r"[A-Za-zÀ-ÿ]{2,}", re.sub(r"\b(?:um+|uh+|erm|hmm+|mm+|hello|hi)\b", "", text, flags=re.I))


def compose_brief(
    summary: CallSummary,
    issue: str = "",
    want: str = "",
    tried: list[str] | None = None,
    agent: str = "",
    repeat: str = "",
    extra: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """A spoken hand-off of at most BRIEF_MAX_WORDS words, built only from extracted facts: who and
    their identifiers, the problem, what was tried, what the agent said they can or cannot do, what
    the caller wants, and the mood when it is not neutral. Parts are dropped from the least useful
    up until the brief fits, in that spoken order."""
    head = summary.caller_name or "Caller, no name given"
    labels = labels or {}
    ids = [
        f"{labels.get(i.value) or i.kind} {i.value}"
        if labels.get(i.value) or i.kind not in ("other", "email", "phone")
        else i.value
        for i in summary.identifiers
    ]
    parts: list[tuple[int, str]] = [(0, head + (", " + ", ".join(ids[:3]) if ids else "") + ".")]
    if issue:
        parts.append((1, _sentence(issue)))
    if repeat:
        repeat = re.sub(r"^(?:this is|it's|that's) (?:the|my)\s+", "", repeat, flags=re.I)
        parts.append((5, "Called before: " + repeat.rstrip(" .!?…") + "."))
    if tried:
        parts.append((3, "Already tried: " + "; ".join(_tried_brief(t) for t in tried) + "."))
    if agent:
        parts.append((4, agent.rstrip(" .!?…") + "."))
    if want:
        parts.append((2, _sentence(want)))
    if summary.sentiment in ("angry", "frustrated"):
        parts.append((6, f"Caller is {summary.sentiment}."))
    elif summary.sentiment == "positive":
        parts.append((7, "Caller is happy."))
    for f in extra or []:
        parts.append((8, _sentence(f)))
    brief = fit_parts(parts, BRIEF_MAX_WORDS)
    # Shouting in the transcript ("THIRD TIME") is not shouted to the agent; short acronyms (MRI, VPN) stay.
    return re.sub(r"\b[A-Z]{4,}\b", lambda m: m.group(0).lower(), brief)


def _tried_brief(t: str) -> str:
    """ "they already tried the reset link" → "the reset link" after the "Already tried:" label."""
    t = re.sub(r"^they\s+(?:already\s+|also\s+)?", "", t.rstrip(" .!?…"))
    return re.sub(r"^tried\s+(?!to\b)", "", t)


def _sentence(s: str) -> str:
    s = s.strip().rstrip(" .!?…,")
    return s[:1].upper() + s[1:] + "."


def fit_parts(parts: list[tuple[int, str]], limit: int) -> str:
    """Keep parts by priority (0 first) while they fit in `limit` words; a part that does not fit is
    clipped if it is one of the first three priorities and at least 5 words are left, else dropped.
    The kept parts stay in their given order."""
    left = limit
    kept: dict[int, str] = {}
    for pos, (_, text) in sorted(enumerate(parts), key=lambda x: x[1][0]):
        n = len(text.split())
        if n <= left:
            kept[pos] = text
            left -= n
        elif (left >= 5 and parts[pos][0] <= 2) or pos == 0:  # only who, the issue and the ask are worth clipping
            kept[pos] = clip_words(text, max(left, 1)).rstrip(".…,;:") + "…"
            left -= len(kept[pos].split())
    return " ".join(kept[i] for i in sorted(kept))


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
