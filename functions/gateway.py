"""The functions gateway: one async API over the service functions, run in-process or on Modal.

    gateway = make_gateway(settings, services)
    summary = await gateway.summarize(SummarizeRequest(segments=...))
    gateway.backend_label   # "local (in-process)" or "Modal · app warm-transfer (falls back to local)"
    gateway.function_status # per entry point: where it last ran, whether it fell back and why, when, how long

- `LocalBackend` (FUNCTIONS_BACKEND=local, the default) calls the `functions.*` entry points directly,
  in a worker thread so CPU work (Whisper, piper) never blocks the event loop.
- `ModalBackend` (FUNCTIONS_BACKEND=modal) calls the functions deployed by `modal_deploy.py`
  (`modal.Function.from_name(MODAL_APP_NAME, name)` and `.remote.aio`) under one deadline of
  MODAL_TIMEOUT_S per call, and turns every Modal failure into a `ConfigError` or `ProviderError`
  whose message says what to do. Without a Modal token it raises `ModalNotConfigured` before contacting
  anything, so the fallback below is immediate.
- With MODAL_FALLBACK_LOCAL=true (the default) a call whose Modal backend failed runs locally instead.
  `dial_phone` is not idempotent: it falls back only when the call never reached Modal (not configured,
  not deployed, lookup failed), never after a timeout, so a slow Modal cannot ring the same phone twice.

Both sides use the same pydantic models, listed once in `ENTRY_POINTS` (modal_deploy.py and the tests use
the same table). On the wire they are explicit JSON-compatible dicts (`to_wire` / `from_wire`; bytes
fields travel as base64), so the deployed app and this process only need to agree on the models' shape.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel

from functions.errors import ConfigError, ProviderError, ProviderTimeout, ServiceError
from functions.models import (
    BriefingAnswer,
    BriefingQuestion,
    CallSummary,
    DialRequest,
    DialResult,
    FunctionStatus,
    SpeechRequest,
    SpeechResult,
    SummarizeRequest,
    TokenRequest,
    TokenResponse,
    TranscribeRequest,
    TranscribeResult,
)

if TYPE_CHECKING:
    from functions.services import Services
    from functions.settings import Settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


# --- the entry points, listed once ------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPoint:
    """One `functions.*` entry point: `module.name(request, services|settings) -> response`."""

    name: str
    module: str
    request: type[BaseModel]
    response: type[BaseModel]
    takes: Literal["services", "settings"] = "services"
    idempotent: bool = True  # safe to run again locally after an ambiguous Modal failure

    def resolve(self) -> Callable[..., BaseModel]:
        return getattr(import_module(self.module), self.name)

    def check(self, request: BaseModel) -> None:
        """A programming error, raised before anything is sent anywhere."""
        if not isinstance(request, self.request):
            raise TypeError(f"{self.name} takes a {self.request.__name__}, not {type(request).__name__}")

    def run(self, request: BaseModel, services: Services) -> BaseModel:
        """Call the entry point in this process (what both the local backend and the Modal container do)."""
        self.check(request)
        arg = services.settings if self.takes == "settings" else services
        result = self.resolve()(request, arg)
        if not isinstance(result, self.response):
            raise ProviderError(f"{self.name} returned {type(result).__name__}, expected {self.response.__name__}")
        return result


ENTRY_POINTS: dict[str, EntryPoint] = {
    ep.name: ep
    for ep in (
        EntryPoint("mint_token", "functions.tokens", TokenRequest, TokenResponse, takes="settings"),
        EntryPoint("transcribe", "functions.stt.transcription", TranscribeRequest, TranscribeResult),
        EntryPoint("summarize", "functions.summary.summarization", SummarizeRequest, CallSummary),
        EntryPoint("synthesize_speech", "functions.tts.speech", SpeechRequest, SpeechResult),
        EntryPoint("dial_phone", "functions.telephony.telephony", DialRequest, DialResult, idempotent=False),
        EntryPoint("answer_question", "functions.qa.briefing_qa", BriefingQuestion, BriefingAnswer),
    )
}


# --- wire format --------------------------------------------------------------------------------------


def _bytes_fields(cls: type[BaseModel]) -> list[str]:
    return [name for name, field in cls.model_fields.items() if field.annotation is bytes]


def to_wire(model: BaseModel) -> dict[str, Any]:
    """A JSON-compatible dict of `model`; top-level bytes fields become base64 text.

    (pydantic's `mode="json"` would encode bytes as UTF-8 text, which fails for audio.)
    """
    binary = _bytes_fields(type(model))
    data = model.model_dump(mode="json", exclude=set(binary))
    for name in binary:
        data[name] = base64.b64encode(getattr(model, name)).decode("ascii")
    return data


def from_wire(cls: type[M], data: Any) -> M:
    """Validate a `to_wire` dict back into `cls`; raises ValueError (pydantic's ValidationError is one)."""
    if isinstance(data, dict):
        data = dict(data)
        for name in _bytes_fields(cls):
            if isinstance(data.get(name), str):
                try:
                    data[name] = base64.b64decode(data[name], validate=True)
                except ValueError as e:
                    raise ValueError(f"{cls.__name__}.{name} is not base64") from e
    return cls.model_validate(data)


# --- errors -------------------------------------------------------------------------------------------


class BackendUnavailable(Exception):
    """Mixin: the backend itself failed (as opposed to the function refusing the input).

    `before_call` is True when the request never reached the function, so running it locally
    instead cannot do anything twice.
    """

    before_call: bool = False


class ModalNotConfigured(BackendUnavailable, ConfigError):
    before_call = True


class ModalNotDeployed(BackendUnavailable, ConfigError):
    before_call = True


class ModalUnavailable(BackendUnavailable, ProviderError):
    retryable = True


class ModalTimeout(BackendUnavailable, ProviderTimeout):
    pass


class ModalMismatch(BackendUnavailable, ConfigError):
    """The deployed function answered for a different configuration than this app's."""


# --- backends -----------------------------------------------------------------------------------------


class Backend(Protocol):
    kind: str  # "local" or "modal"
    label: str

    async def call(self, ep: EntryPoint, request: BaseModel) -> BaseModel: ...


class LocalBackend:
    """Calls `functions.*` in this process."""

    kind = "local"
    label = "local (in-process)"

    def __init__(self, services: Services, executor: Executor | None = None) -> None:
        self.services = services
        self.executor = executor  # None: the running loop's default pool

    async def call(self, ep: EntryPoint, request: BaseModel) -> BaseModel:
        return await asyncio.get_running_loop().run_in_executor(self.executor, ep.run, request, self.services)


def modal_lookup(app_name: str, function_name: str) -> Any:
    """A lazy handle on a deployed function (nothing is contacted until it is hydrated or called)."""
    import modal

    return modal.Function.from_name(app_name, function_name)


def modal_token_problem() -> str | None:
    """Why Modal cannot authenticate from this process, or None if a token is configured.

    Reads Modal's own configuration (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or ~/.modal.toml); contacts nothing.
    """
    try:
        from modal.config import config
    except ImportError:
        return "the `modal` package is not installed (pip install -r requirements.txt)"
    if not (config.get("token_id") and config.get("token_secret")):
        return "no Modal token: run `modal token new` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)"
    return None


class ModalBackend:
    """Calls the functions deployed by `modal_deploy.py`.

    `lookup(app_name, function_name)` returns an object with `hydrate.aio()` and `remote.aio(payload)`;
    the default is `modal.Function.from_name`. Hydrated handles are cached per function.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        lookup: Callable[[str, str], Any] = modal_lookup,
        token_problem: Callable[[], str | None] = modal_token_problem,
    ) -> None:
        self.settings = settings
        self._token_problem = token_problem  # checked per call: a token configured later is used
        self.app_name = settings.modal_app_name
        self.timeout_s = settings.modal_timeout_s
        self._lookup = lookup
        self._handles: dict[str, Any] = {}
        self.kind = "modal"
        self.label = f"Modal · app {self.app_name}"

    async def call(self, ep: EntryPoint, request: BaseModel) -> BaseModel:
        ep.check(request)
        if problem := self._token_problem():  # nothing contacted: the fallback runs at once, not after a timeout
            raise ModalNotConfigured(f"FUNCTIONS_BACKEND=modal, but Modal is not configured: {problem}")
        payload = to_wire(request)
        phase = ["lookup"]
        try:
            raw = await asyncio.wait_for(self._invoke(ep.name, payload, phase), self.timeout_s)
        except ServiceError:
            raise  # the function ran on Modal and refused (InvalidInput, ConfigError, …): same as locally
        except TimeoutError as e:
            where = "looking up" if phase[0] == "lookup" else "waiting for"
            err = ModalTimeout(
                f"Modal did not answer within {self.timeout_s:g}s {where} {self.app_name}.{ep.name} "
                f"(MODAL_TIMEOUT_S; check network access to Modal and `modal app logs {self.app_name}`)"
            )
            err.before_call = phase[0] == "lookup"
            raise err from e
        except Exception as e:
            raise self._convert(e, ep.name, phase[0]) from e
        try:
            result = from_wire(ep.response, raw)
        except ValueError as e:
            raise ModalMismatch(
                f"Modal's {self.app_name}.{ep.name} returned data that is not a {ep.response.__name__} ({e}): "
                "redeploy with `modal deploy modal_deploy.py` so both sides run the same code"
            ) from e
        self._check(ep, result)
        return result

    async def _invoke(self, name: str, payload: dict[str, Any], phase: list[str]) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._lookup(self.app_name, name)
            await handle.hydrate.aio()
            self._handles[name] = handle
        phase[0] = "call"
        return await handle.remote.aio(payload)

    def _convert(self, e: BaseException, name: str, phase: str) -> ServiceError:
        import modal.exception as mx

        target = f"{self.app_name}.{name}"
        if isinstance(e, mx.AuthError):
            problem = modal_token_problem() or f"Modal refused the token: {e}"
            return ModalNotConfigured(f"FUNCTIONS_BACKEND=modal, but Modal is not configured: {problem}")
        if isinstance(e, mx.NotFoundError):
            self._handles.pop(name, None)
            return ModalNotDeployed(
                f"Modal has no function {target}: deploy it with `modal deploy modal_deploy.py` "
                f"(or fix MODAL_APP_NAME={self.app_name!r}): {e}"
            )
        if isinstance(e, mx.PermissionDeniedError):
            return ModalNotConfigured(f"the Modal token may not call {target}: {e}")
        if isinstance(e, mx.ConnectionError | OSError | mx.InternalError | mx.ServiceError | mx.InternalFailure):
            err = ModalUnavailable(
                f"Modal is unreachable ({'lookup' if phase == 'lookup' else 'call'}) for {target}: {e}"
            )
            err.before_call = phase == "lookup"
            return err
        if isinstance(e, mx.FunctionTimeoutError):
            return ModalTimeout(f"{target} ran past its Modal timeout (see `modal app logs {self.app_name}`): {e}")
        if isinstance(e, mx.Error):
            err = ModalUnavailable(f"Modal failed to run {target}: {type(e).__name__}: {e}")
            err.before_call = phase == "lookup"
            return err
        err = ModalUnavailable(f"calling {target} on Modal failed: {type(e).__name__}: {e}")
        err.before_call = phase == "lookup"
        return err

    def _check(self, ep: EntryPoint, result: BaseModel) -> None:
        """A token minted with the Modal secret's keys only works on the server those keys belong to."""
        if ep.name == "mint_token" and isinstance(result, TokenResponse):
            ours = self.settings.livekit_url.rstrip("/")
            theirs = result.url.rstrip("/")
            if ours != theirs:
                raise ModalMismatch(
                    f"the Modal secret's LIVEKIT_URL ({theirs or 'unset'}) is not this app's "
                    f"({ours or 'the embedded dev server'}): tokens minted on Modal would not work here; "
                    "put this app's LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET in the Modal secret"
                )


# --- the gateway --------------------------------------------------------------------------------------


def merge_status(*groups: Iterable[FunctionStatus]) -> list[FunctionStatus]:
    """The newest status per function across several gateways, in the order of ENTRY_POINTS."""
    newest: dict[str, FunctionStatus] = {}
    for group in groups:
        for st in group:
            if st.function not in newest or st.at >= newest[st.function].at:
                newest[st.function] = st
    order = list(ENTRY_POINTS)
    return sorted(newest.values(), key=lambda st: order.index(st.function) if st.function in order else len(order))


class FunctionsGateway:
    """The app's single way to call the service functions, whichever backend runs them.

    `function_status` says, per entry point, where its last call ran; `listeners` are called with each
    new status (a media job reports its gateway's to the control plane, `media.function_reports`)."""

    def __init__(self, primary: Backend, fallback: Backend | None = None, *, origin: str = "control plane") -> None:
        self.primary = primary
        self.fallback = fallback
        self.origin = origin
        self.last_fallback: tuple[str, ServiceError, float] | None = None  # (function, why, when)
        self._status: dict[str, FunctionStatus] = {}
        self.listeners: list[Callable[[FunctionStatus], None]] = []

    @property
    def backend_label(self) -> str:
        """What the UI shows: the backend in use, and why it fell back if it did."""
        label = self.primary.label
        if self.fallback is not None:
            label += f" (falls back to {self.fallback.kind})"
        if self.last_fallback is not None:
            name, err, _ = self.last_fallback
            label += f" — last {name} ran locally: {err.message}"
        return label

    @property
    def function_status(self) -> list[FunctionStatus]:
        """Per entry point that ran here: where its last call ran, whether it fell back and why, when."""
        return merge_status(self._status.values())

    async def mint_token(self, req: TokenRequest) -> TokenResponse:
        return await self._call("mint_token", req)  # type: ignore[return-value]

    async def transcribe(self, req: TranscribeRequest) -> TranscribeResult:
        return await self._call("transcribe", req)  # type: ignore[return-value]

    async def summarize(self, req: SummarizeRequest) -> CallSummary:
        return await self._call("summarize", req)  # type: ignore[return-value]

    async def synthesize_speech(self, req: SpeechRequest) -> SpeechResult:
        return await self._call("synthesize_speech", req)  # type: ignore[return-value]

    async def dial_phone(self, req: DialRequest) -> DialResult:
        return await self._call("dial_phone", req)  # type: ignore[return-value]

    async def answer_question(self, req: BriefingQuestion) -> BriefingAnswer:
        return await self._call("answer_question", req)  # type: ignore[return-value]

    async def _call(self, name: str, request: BaseModel) -> BaseModel:
        ep = ENTRY_POINTS[name]
        started = time.monotonic()
        backend, why = self.primary, None
        try:
            try:
                result = await self.primary.call(ep, request)
            except BackendUnavailable as e:
                if self.fallback is None or not (e.before_call or ep.idempotent):
                    raise
                assert isinstance(e, ServiceError)
                log.warning(
                    "%s: %s backend failed (%s); running it on %s", name, self.primary.label, e, self.fallback.label
                )
                backend, why = self.fallback, e
                result = await self.fallback.call(ep, request)
        except Exception as e:
            self._record(name, backend, why, started, error=e)
            raise
        if why is not None:
            self.last_fallback = (name, why, time.time())
        elif self.last_fallback is not None and self.last_fallback[0] == name:
            self.last_fallback = None  # the primary works again for this function
        self._record(name, backend, why, started)
        return result

    def _record(
        self, name: str, backend: Backend, why: ServiceError | None, started: float, error: Exception | None = None
    ) -> None:
        if error is None:
            message = ""
        else:
            message = error.message if isinstance(error, ServiceError) else f"{type(error).__name__}: {error}"
        status = FunctionStatus(
            function=name,
            backend=backend.label,
            kind=backend.kind,
            origin=self.origin,
            fell_back=why is not None,
            reason=why.message[:1000] if why is not None else "",
            ok=error is None,
            error=message[:1000],
            at=time.time(),
            duration_s=round(time.monotonic() - started, 4),
        )
        self._status[name] = status
        for listener in list(self.listeners):
            try:
                listener(status)
            except Exception:
                log.exception("a function status listener failed")


def make_gateway(
    settings: Settings,
    services: Services,
    *,
    executor: Executor | None = None,
    local: Backend | None = None,
    wrap_backend: Callable[[Backend], Backend] | None = None,
    origin: str = "control plane",
) -> FunctionsGateway:
    """FUNCTIONS_BACKEND=local → in-process; =modal → Modal, with local fallback if MODAL_FALLBACK_LOCAL.

    `executor` bounds the local CPU work of this process; `local` replaces the in-process backend
    (a media job runs speech in its worker's model host, `media.model_host`). `wrap_backend` is
    applied to every backend (tests record the calls with it, `tests/support/recording_backend.py`);
    `origin` names this process in the function status ("control plane", "media worker")."""
    wrap = wrap_backend or (lambda backend: backend)
    local = wrap(local or LocalBackend(services, executor))
    if settings.functions_backend == "modal":
        fallback = local if settings.modal_fallback_local else None
        problem = modal_token_problem()
        if problem:
            log.warning(
                "FUNCTIONS_BACKEND=modal but %s; calls will %s",
                problem,
                "run locally" if fallback else "fail with ModalNotConfigured",
            )
        return FunctionsGateway(wrap(ModalBackend(settings)), fallback, origin=origin)
    return FunctionsGateway(local, origin=origin)
