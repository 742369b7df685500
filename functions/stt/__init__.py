"""Speech to text: the `Transcriber` Protocol, faster-whisper offline, OpenAI in the cloud, and the
`transcribe` entry point (`transcription.py`); the bundled Whisper model (`whisper_model.py`)."""
