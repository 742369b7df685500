"""Utterance segmentation for live audio: an energy voice-activity detector with an
adaptive noise floor, hangover and a length cap.

Pure and synchronous (no LiveKit, no models), so it is unit-testable with PCM made
in the test. 20 ms frames at 16 kHz.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from functions.audio import rms_dbfs

RATE = 16000
FRAME = RATE // 50  # 20 ms


@dataclass
class Utterance:
    pcm: bytes  # 16 kHz mono int16, with a short pre-roll
    start: float  # seconds on the stream's clock
    end: float
    capped: bool = False  # ended by the length cap, not by silence


class Segmenter:
    def __init__(
        self,
        *,
        silence_ms: int = 600,
        max_ms: int = 15000,
        min_speech_ms: int = 200,
        preroll_ms: int = 200,
        min_dbfs: float = -45.0,
        above_floor_db: float = 12.0,
    ) -> None:
        self.silence_frames = silence_ms // 20
        self.max_frames = max_ms // 20
        self.min_speech_frames = min_speech_ms // 20
        self.min_dbfs = min_dbfs
        self.above_floor_db = above_floor_db
        self._floor = -70.0
        self._pending = b""
        self._preroll: deque[bytes] = deque(maxlen=preroll_ms // 20)
        self._frames: list[bytes] = []
        self._speech_frames = 0
        self._silent_run = 0
        self._start_frame = 0
        self._frame_index = 0  # frames seen so far: the stream's clock

    @property
    def speaking(self) -> bool:
        """An utterance is in progress (speech heard, its end-of-utterance silence not over yet)."""
        return bool(self._frames)

    def _is_speech(self, db: float) -> bool:
        speech = db > max(self.min_dbfs, self._floor + self.above_floor_db)
        # The floor follows quiet frames quickly and loud ones very slowly.
        rate = 0.02 if speech else 0.2
        self._floor += rate * (db - self._floor) if db < self._floor + 30 else 0.0
        self._floor = max(self._floor, -90.0)
        return speech

    def push(self, pcm: bytes) -> list[Utterance]:
        """Feed 16 kHz mono PCM of any length; get the utterances it completed."""
        done: list[Utterance] = []
        data = self._pending + pcm
        usable = len(data) - len(data) % (FRAME * 2)
        self._pending = data[usable:]
        for i in range(0, usable, FRAME * 2):
            frame = data[i : i + FRAME * 2]
            self._frame_index += 1
            speech = self._is_speech(rms_dbfs(frame, silence=-120.0))
            if not self._frames:
                if speech:
                    self._frames = [*self._preroll, frame]
                    self._start_frame = self._frame_index - len(self._preroll) - 1
                    self._speech_frames, self._silent_run = 1, 0
                else:
                    self._preroll.append(frame)
                continue
            self._frames.append(frame)
            if speech:
                self._speech_frames += 1
                self._silent_run = 0
            else:
                self._silent_run += 1
            ended = self._silent_run >= self.silence_frames
            if (ended or len(self._frames) >= self.max_frames) and (
                utt := self._close(trim=self._silent_run if ended else 0, capped=not ended)
            ):
                done.append(utt)
        return done

    def flush(self) -> Utterance | None:
        """End of stream: whatever speech is in progress becomes an utterance."""
        return self._close(trim=self._silent_run) if self._frames else None

    def _close(self, *, trim: int, capped: bool = False) -> Utterance | None:
        frames = self._frames[: len(self._frames) - max(0, trim - 5)]  # keep 100 ms of tail
        enough = self._speech_frames >= self.min_speech_frames
        start = self._start_frame * 0.02
        self._frames, self._speech_frames, self._silent_run = [], 0, 0
        self._preroll.clear()
        if not enough:
            return None
        return Utterance(pcm=b"".join(frames), start=start, end=start + len(frames) * 0.02, capped=capped)
