"""The media plane: LiveKit Agents jobs that do everything with audio (hold audio, the spoken
brief, live transcription). The control plane never joins a room; it dispatches these jobs by
agent name and hears back over `functions.media_protocol`."""
