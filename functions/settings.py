"""The one place that reads configuration (environment variables and `.env`).

Everything else receives a `Settings` instance. Validation happens at startup
(`load_settings()`), and every message names the environment variable to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUEUE_RE = r"[a-z0-9][a-z0-9_-]{0,31}"  # a queue (skill) name: it is spoken and shown, so kept plain
# The fields each announcement may use (anything else is refused at startup, naming the variable).
_ANNOUNCEMENT_FIELDS = {
    "announce_hold": set(),
    "announce_hold_queue": {"queue"},
    "announce_reminder": set(),
    "announce_back": {"agent"},
}


def _check_template(var: str, text: str, allowed: set[str]) -> None:
    import string

    try:
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise ValueError(f"{var.upper()}: {e}") from None
    if bad := sorted(used - allowed):
        fields = ", ".join("{" + f + "}" for f in sorted(allowed)) or "none"
        raise ValueError(f"{var.upper()}: unknown field {{{bad[0]}}} (allowed: {fields})")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    # --- LiveKit -----------------------------------------------------------------
    livekit_url: str = Field("", description="ws(s):// URL of a LiveKit server; empty = start the embedded dev server")
    livekit_api_key: str = ""
    livekit_api_secret: SecretStr = SecretStr("")
    livekit_server_bin: str = Field("", description="path to livekit-server; empty = PATH or .tools/bin")
    livekit_port: int = Field(7880, ge=0, le=65535, description="embedded server signal port (0 = pick a free one)")
    livekit_sip_uri: str = ""

    # --- tokens and transfer timing ----------------------------------------------
    token_ttl_s: int = Field(60, ge=10, le=3600)  # joining only: LiveKit refreshes a connected token
    ring_timeout_s: float = Field(30.0, gt=0, le=600, description="B must join the consult within this")
    accept_timeout_s: float = Field(180.0, gt=0, le=3600, description="B must accept within this after initiate")
    join_timeout_s: float = Field(15.0, gt=0, le=120, description="B must reach the caller's room within this")

    # --- presence, queues and offers (control.presence, control.routing) ------------
    offer_timeout_s: float = Field(
        15.0,
        gt=0,
        le=600,
        description="a ringing offer (a waiting call offered to one agent, or a queue or hunt-list transfer "
        "offered to one agent who has not joined the consult) moves on after this",
    )
    wrap_up_s: float = Field(10.0, ge=0, le=3600, description="after a call, an agent is in wrap-up this long")
    agent_skills: str = Field(
        "",
        description="queues (skills) per agent: 'agent-b:billing|returns,agent-c:billing'",
    )
    intro_limit_s: float = Field(
        120.0, gt=0, le=3600, description="a three-way introduction: A leaves by itself after this"
    )
    # What the caller hears (the call job speaks it through the gateway) and reads on the caller page.
    # Empty: not said. {queue} and {agent} are filled in.
    announce_hold: str = Field("Please hold while I bring in a colleague.", max_length=300)
    announce_hold_queue: str = Field("Please hold while I bring in a colleague from {queue}.", max_length=300)
    announce_reminder: str = Field("Still connecting you, thanks for waiting.", max_length=300)
    announce_reminder_s: float = Field(20.0, ge=0, le=600, description="0 = no reminder")
    announce_back: str = Field("You're back with {agent}.", max_length=300)

    # --- storage -----------------------------------------------------------------
    data_dir: Path = PROJECT_ROOT / "data"
    db_path: Path | None = None

    # --- AI providers --------------------------------------------------------------
    openai_api_key: SecretStr = SecretStr("")
    openai_base_url: str = ""
    openai_stt_model: str = "gpt-4o-mini-transcribe"
    openai_chat_model: str = "gpt-4o-mini"
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "alloy"
    llm_timeout_s: float = Field(4.0, gt=0, le=120)
    stt_provider: Literal["auto", "openai", "whisper"] = "auto"
    summarizer_provider: Literal["auto", "openai", "offline"] = "auto"
    tts_provider: Literal["auto", "openai", "piper", "espeak"] = "auto"
    whisper_model_path: str = ""
    whisper_compute_type: str = "int8"
    whisper_cpu_threads: int = Field(0, ge=0, le=64, description="CTranslate2 threads per model (0 = cores)")
    live_whisper_model: str = Field(
        "",
        description="Whisper model of the workers' live transcription (empty = WHISPER_MODEL_PATH)",
    )
    live_whisper_context_s: float = Field(
        15.0, ge=0, le=30, description="WHISPER_CONTEXT_S of the workers' live transcription"
    )
    live_whisper_fast_model: str = Field(
        "tiny.en",
        description="Whisper model for live utterances that queued for a core (empty = never switch)",
    )
    live_whisper_fast_context_s: float = Field(
        20.0, ge=0, le=30, description="WHISPER_CONTEXT_S of LIVE_WHISPER_FAST_MODEL"
    )
    live_whisper_fast_after_s: float = Field(
        0.5, ge=0, le=30, description="seconds an utterance waits for a core before the fast model takes it"
    )
    whisper_workers: int = Field(1, ge=1, le=16, description="utterances one Whisper model transcribes at once")
    whisper_context_s: float = Field(
        0.0,
        ge=0,
        le=30,
        description="Whisper encoder window for short utterances, seconds (0 = the full 30 s)",
    )
    piper_voice_path: str = ""
    piper_cpu_threads: int = Field(1, ge=0, le=64, description="ONNX threads of the piper voice (0 = cores)")
    live_transcription: bool = Field(True, description="transcribe every call room live (captions + summary)")
    briefing_qa: bool = Field(
        True, description="B may question the briefing by voice in the consult (needs LIVE_TRANSCRIPTION)"
    )
    qa_timeout_s: float = Field(
        1.5,
        gt=0,
        le=30,
        description="an LLM answer to B's question is awaited this long, then the offline one is spoken",
    )

    # --- telephony -----------------------------------------------------------------
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from_number: str = ""
    twilio_api_base_url: str = Field("", description="override Twilio's REST host (tests point it at a local recorder)")
    twilio_ring_timeout_s: int = Field(25, ge=5, le=600)
    twilio_machine_detection: bool = False
    public_base_url: str = Field("", description="externally reachable base URL of this app, for Twilio webhooks")

    # --- functions backend ------------------------------------------------------------
    functions_backend: Literal["local", "modal"] = "local"
    modal_app_name: str = "warm-transfer"
    modal_timeout_s: float = Field(30.0, gt=0, le=600)
    modal_fallback_local: bool = True

    # --- media plane (LiveKit Agents workers) -------------------------------------------
    workers: int = Field(1, ge=0, le=16, description="media workers the app starts (0 = they run elsewhere)")
    worker_max_jobs: int = Field(120, ge=1, le=10000, description="jobs (rooms) one worker takes before it is full")
    worker_idle_jobs: int = Field(2, ge=0, le=200, description="job processes a worker keeps warm for the next calls")
    worker_connect_slots: int = Field(
        3, ge=0, le=1000, description="job processes of a worker that may join a room at once (0 = no limit)"
    )
    worker_model_threads: int = Field(
        0, ge=0, le=64, description="Whisper replicas (one thread each) per worker (0 = cores)"
    )
    worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="nice of a worker's job processes (its model host 10 lower still): below the control plane, "
        "livekit-server and the worker's own heartbeat on a shared machine (0 = as started)",
    )
    control_url: str = Field("", description="base URL workers report to; empty = http://APP_HOST:APP_PORT")
    media_agent_name: str = Field(
        "warm-transfer-media",
        min_length=1,
        max_length=100,
        description="the agent name workers register under and jobs are dispatched to (one per deployment "
        "sharing a LiveKit server)",
    )
    caller_grace_s: float = Field(
        8.0, ge=0, le=300, description="a caller who left the room (reload, network) may rejoin within this"
    )
    target_grace_s: float = Field(
        6.0,
        ge=0,
        le=60,
        description="a consult target who left the consult room (reload, network) may rejoin within this; the "
        "caller hears hold audio meanwhile, so it is kept short",
    )
    hold_ack_timeout_s: float = Field(2.0, gt=0, le=30, description="initiate waits this long for hold audio")
    reconcile_interval_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="how often the control plane compares LiveKit with the state and repairs the media (0 = never)",
    )

    # --- app ------------------------------------------------------------------------------
    app_host: str = "127.0.0.1"
    app_port: int = Field(7860, ge=0, le=65535)
    # One credential per agent: "agent-a:SECRET,agent-b:sha256:<hex of sha256(SECRET)>". When set,
    # an agent's identity is the one its secret belongs to, and AGENT_PASSCODE/API_KEY are not used.
    agents: SecretStr = SecretStr("")
    agent_passcode: SecretStr = SecretStr("")
    api_key: SecretStr = SecretStr("")
    cors_origins: str = ""

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.livekit_url:
            if not self.livekit_url.startswith(("ws://", "wss://", "http://", "https://")):
                raise ValueError("LIVEKIT_URL must start with ws://, wss://, http:// or https://")
            if not self.livekit_api_key or not self.livekit_api_secret.get_secret_value():
                raise ValueError("LIVEKIT_URL is set, so LIVEKIT_API_KEY and LIVEKIT_API_SECRET are required")
        if self.twilio_account_sid and not (self.twilio_auth_token.get_secret_value() and self.twilio_from_number):
            raise ValueError("TWILIO_ACCOUNT_SID is set, so TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER are required")
        if self.twilio_account_sid and not self.public_base_url.startswith(("http://", "https://")):
            raise ValueError(
                "TWILIO_ACCOUNT_SID is set, so PUBLIC_BASE_URL (where Twilio reaches this app) is required"
            )
        if self.control_url and not self.control_url.startswith(("http://", "https://")):
            raise ValueError("CONTROL_URL must be an http(s) URL")
        if self.openai_base_url and not self.openai_base_url.startswith(("http://", "https://")):
            raise ValueError("OPENAI_BASE_URL must be an http(s) URL")
        self.agent_credentials()  # raises, naming AGENTS, on a malformed entry
        self.skills()  # raises, naming AGENT_SKILLS
        for var, fields in _ANNOUNCEMENT_FIELDS.items():
            _check_template(var, getattr(self, var), fields)
        return self

    def skills(self) -> dict[str, frozenset[str]]:
        """AGENT_SKILLS as identity → the queues (skills) the agent answers."""
        import re

        from functions.models import is_agent_identity

        out: dict[str, frozenset[str]] = {}
        for n, entry in enumerate((e.strip() for e in self.agent_skills.split(",") if e.strip()), start=1):
            identity, sep, names = entry.partition(":")
            identity = identity.strip()
            queues = frozenset(q.strip().lower() for q in names.split("|") if q.strip())
            if not sep or not is_agent_identity(identity) or not queues:
                raise ValueError(f"AGENT_SKILLS entry {n} must be 'agent-id:queue|queue'")
            if bad := [q for q in queues if not re.fullmatch(QUEUE_RE, q)]:
                raise ValueError(f"AGENT_SKILLS entry {n}: '{bad[0]}' is not a queue name (1-32 of a-z 0-9 _ -)")
            out[identity] = out.get(identity, frozenset()) | queues
        return out

    def agent_credentials(self) -> dict[str, str]:
        """AGENTS as identity → sha256 hex digest of that agent's secret."""
        import hashlib
        import re

        from functions.models import is_agent_identity

        out: dict[str, str] = {}
        raw = self.agents.get_secret_value().strip()
        for n, entry in enumerate((e.strip() for e in raw.split(",") if e.strip()), start=1):
            identity, sep, secret = entry.partition(":")
            identity = identity.strip()
            if not sep or not secret or not is_agent_identity(identity):
                raise ValueError(
                    f"AGENTS entry {n} must be 'identity:secret', the identity an agent id "
                    "(1-64 of A-Z a-z 0-9 _ . : -, not caller-/media-/briefing-)"
                )
            if identity in out:
                raise ValueError(f"AGENTS names '{identity}' twice")
            if secret.startswith("sha256:"):
                digest = secret.removeprefix("sha256:").lower()
                if not re.fullmatch(r"[0-9a-f]{64}", digest):
                    raise ValueError(f"AGENTS entry {n}: sha256: must be followed by 64 hex digits")
            else:
                if len(secret) < 8:
                    raise ValueError(f"AGENTS entry {n}: the secret of '{identity}' is shorter than 8 characters")
                digest = hashlib.sha256(secret.encode()).hexdigest()
            out[identity] = digest
        return out

    @property
    def database_path(self) -> Path:
        return self.db_path or (self.data_dir / "warm_transfer.sqlite3")

    @property
    def openai_configured(self) -> bool:
        return bool(self.openai_api_key.get_secret_value() or self.openai_base_url)

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid)


def load_settings(**overrides: object) -> Settings:
    """Build and validate settings, turning pydantic's report into one clear error."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
            var = loc[0].upper() if loc else ""
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            problems.append(f"{var}: {msg}" if var else msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from e


def embedded_settings(settings: Settings, state_dir: Path) -> Settings:
    """Settings pointed at the embedded server whose kept state is in `state_dir` (for workers).

    `state_dir/server.json` is written by the control plane's embedded server (control.livekit_server).
    """
    try:
        state = json.loads((state_dir / "server.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"no embedded livekit-server state in {state_dir} ({e}); start the app first, or set LIVEKIT_URL"
        ) from e
    return settings.model_copy(
        update={
            "livekit_url": f"ws://127.0.0.1:{state['port']}",
            "livekit_api_key": state["api_key"],
            "livekit_api_secret": type(settings.livekit_api_secret)(state["api_secret"]),
        }
    )
