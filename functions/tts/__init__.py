"""Text to speech: the `Speaker` Protocol, piper (and espeak-ng) offline, OpenAI in the cloud, and the
`synthesize_speech` entry point (`speech.py`); what a number or an id sounds like (`textnorm.py`)."""
