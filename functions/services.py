"""Dependency container: `build_services(settings)` picks providers by settings.

Providers are built lazily on first use (so importing and constructing costs
nothing, and a process that never transcribes never loads Whisper). Tests pass
their own providers by keyword.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from functions.settings import Settings

if TYPE_CHECKING:
    from functions.qa.briefing_qa import Answerer
    from functions.stt.protocol import Transcriber
    from functions.summary.protocol import Summarizer
    from functions.telephony.protocol import Dialer
    from functions.tts.protocol import Speaker


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        transcriber: Transcriber | None = None,
        summarizer: Summarizer | None = None,
        speaker: Speaker | None = None,
        dialer: Dialer | None = None,
        answerer: Answerer | None = None,
    ) -> None:
        self.settings = settings
        # Injected providers win over the lazily built defaults.
        for name, value in (
            ("transcriber", transcriber),
            ("summarizer", summarizer),
            ("speaker", speaker),
            ("dialer", dialer),
            ("answerer", answerer),
        ):
            if value is not None:
                self.__dict__[name] = value

    @cached_property
    def transcriber(self) -> Transcriber:
        from functions.stt.transcription import make_transcriber

        return make_transcriber(self.settings)

    @cached_property
    def summarizer(self) -> Summarizer:
        from functions.summary.summarization import make_summarizer

        return make_summarizer(self.settings)

    @cached_property
    def speaker(self) -> Speaker:
        from functions.tts.speech import make_speaker

        return make_speaker(self.settings)

    @cached_property
    def dialer(self) -> Dialer:
        from functions.telephony.telephony import make_dialer

        return make_dialer(self.settings)

    @cached_property
    def answerer(self) -> Answerer:
        from functions.qa.briefing_qa import make_answerer

        return make_answerer(self.settings)


def build_services(settings: Settings, **providers: object) -> Services:
    return Services(settings, **providers)  # type: ignore[arg-type]
