"""The control plane: the orchestrator and everything it decides with. Never touches audio.

The transfer state machine and its SQLite event log, the orchestrator that sequences rooms, tokens
and media jobs, presence and routing, the reconciler, the HTTP API, the Twilio and LiveKit webhooks,
the workers' report route, and the embedded livekit-server. `app.py` composes it (`context.AppContext`).
Imports go down only: `control` uses `functions`, never `ui` or `media`.
"""
