"""The HTTP API: versioned JSON endpoints under `/api`, over the same orchestrator, auth
and functions gateway that the UI uses (no logic of its own beyond checking who asks).

Who may call what:
- agents send their credential as `X-API-Key` or `X-Agent-Passcode`, plus who they are in
  `X-Agent-Identity`: with AGENTS, their own secret, which must belong to that identity; without
  it, the shared API_KEY or AGENT_PASSCODE (see control/auth.py). With no secret configured
  (local development) the credential is not checked, but the identity is still required.
- a caller's only credential is the ticket it got from `POST /api/rooms/create`; it buys a
  LiveKit token for that one call (`POST /api/tokens`, role `caller`) and nothing else.

Every refusal is a JSON `ErrorBody` (`{"detail": ..., "error": ...}`): 401 no credential,
403 wrong credential or not your call/transfer, 404 unknown, 409 illegal state change,
413 body too large, 422 invalid input, 501 not configured, 502/504 a provider or LiveKit
failed, 503 starting or the database cannot be written (`StorageUnavailable`, with
Retry-After), 500 `InternalError` for a bug (logged). A refused request changes nothing
(the orchestrator checks before it acts).

Initiate, complete and dial take an optional `Idempotency-Key`: a repeat by the same agent
with the same body gets the first response back (kept in the store for 24 h).
"""

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from control.api_models import (
    API_VERSION,
    ID_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    IDENTITY_PATTERN,
    MAX_BODY_BYTES,
    MAX_TRANSCRIPT_BODY_BYTES,
    ROOM_PATTERN,
    AgentsResponse,
    AgentTokenRequest,
    ApiInfo,
    AvailabilityRequest,
    CallerTokenRequest,
    CompleteResponse,
    CreateCallRequest,
    CreateCallResponse,
    DeclineRequest,
    DialApiRequest,
    DialApiResponse,
    ErrorBody,
    InitiateRequest,
    ParticipantView,
    PhoneCallsResponse,
    PhoneCallView,
    RoomView,
    SpeechApiRequest,
    SummaryRequest,
    TokenApiRequest,
    TransferAction,
    WaitingCallsResponse,
    WaitingCallView,
)
from control.body_limit import read_body
from control.store import storage_error
from functions.audio import read_wav
from functions.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotAvailable,
    NotFound,
    NotReady,
    ServiceError,
    Unauthorized,
)
from functions.models import (
    RESERVED_PREFIXES,
    AgentPublic,
    Call,
    CallStatus,
    CallSummary,
    SpeechRequest,
    SummarizeRequest,
    TargetKind,
    TokenResponse,
    TranscriptSegment,
    Transfer,
    TransferState,
)

log = logging.getLogger(__name__)

MAX_BODY_KEY = "x-max-body-bytes"
RETRY_AFTER_S = 1
LIVEKIT_HEALTH_TIMEOUT_S = 1.0  # GET /api answers within about this, LiveKit up or not
LIVEKIT_HEALTH_TTL_S = 2.0  # an unauthenticated GET /api checks LiveKit at most this often
IDEMPOTENCY_WAIT_S = 10.0  # a repeat waits this long for the first request with its key to finish


def error_response(status: int, detail: str, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": error, **extra}, status_code=status)


def service_error_response(e: ServiceError) -> JSONResponse:
    # A ConfigError is the server's set-up, not the client's request: 503 says "not available here".
    status = 503 if isinstance(e, ConfigError) else e.status_code
    response = error_response(status, e.message, type(e).__name__)
    if status == 503 and e.retryable:  # e.g. the database is read-only or full: worth retrying later
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def validation_error_response(e: RequestValidationError) -> JSONResponse:
    """A clear sentence plus where; never echoes the client's input back."""
    errors = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in e.errors()
    ]
    first = "; ".join(f"{'.'.join(x['loc'])}: {x['msg']}" for x in errors[:3]) or "invalid request"
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return error_response(422, f"invalid request: {first}{more}", "ValidationError", errors=errors)


class ApiRoute(APIRoute):
    """Every API route: a body-size limit checked before parsing, one mapping of errors to
    JSON responses, and the API version on every response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = int((self.openapi_extra or {}).get(MAX_BODY_KEY, MAX_BODY_BYTES))

        async def route(request: Request) -> Response:
            try:
                if request.method in ("POST", "PUT", "PATCH"):
                    await _read_limited(request, limit)
                response = await handler(request)
            except ServiceError as e:
                response = service_error_response(e)
            except RequestValidationError as e:
                response = validation_error_response(e)
            except HTTPException as e:  # FastAPI's own, e.g. 400 for a body that is not UTF-8
                response = error_response(
                    e.status_code, str(e.detail), "BadRequest" if e.status_code == 400 else "HTTP"
                )
            except sqlite3.Error as e:  # a store that did not convert its own failure
                log.warning("%s %s: database failure: %s", request.method, request.url.path, e)
                response = service_error_response(storage_error(e))
            except Exception:
                # A bug: logged with its traceback, answered in the API's shape (never a text page).
                log.exception("%s %s failed", request.method, request.url.path)
                response = error_response(500, "internal server error; it has been logged", "InternalError")
            response.headers["X-API-Version"] = str(API_VERSION)
            return response

        return route


async def _read_limited(request: Request, limit: int) -> None:
    """Read the body up to `limit` bytes (Content-Length first, then the stream itself)."""
    request._body = await read_body(request, limit)  # what FastAPI parses next


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in sorted({400, 413, 422, 503, *codes})}


AGENT_ERRORS = (401, 403)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKey", auto_error=False, description="the server's API_KEY"
)
passcode_scheme = APIKeyHeader(
    name="X-Agent-Passcode",
    scheme_name="AgentPasscode",
    auto_error=False,
    description="the agents' shared passcode (AGENT_PASSCODE), the same sign-in as the UI",
)


def api_router(ctx: Any) -> APIRouter:
    """Routes read `ctx.orchestrator`, `ctx.auth`, ... at request time (they are filled at startup)."""
    router = APIRouter(prefix="/api", tags=[f"api v{API_VERSION}"], route_class=ApiRoute)
    gateway_box: list[Any] = []

    def started() -> Any:
        if not ctx.started:
            raise NotReady("the server is starting; try again in a moment")
        return ctx

    def gateway() -> Any:
        """The app's functions gateway (local or Modal), the one the UI uses too."""
        if getattr(ctx, "gateway", None) is not None:
            return ctx.gateway
        if not gateway_box:  # an AppContext without a gateway (older composition): build one
            from functions.gateway import make_gateway

            gateway_box.append(make_gateway(ctx.settings, ctx.services))
        return gateway_box[0]

    def require_agent(
        api_key: Annotated[str | None, Depends(api_key_scheme)],
        passcode: Annotated[str | None, Depends(passcode_scheme)],
        identity: Annotated[
            str | None,
            Header(
                alias="X-Agent-Identity",
                pattern=IDENTITY_PATTERN,
                max_length=64,
                description="required on agent endpoints: the agent making the request",
            ),
        ] = None,
    ) -> str:
        c = started()
        if not c.auth.open_mode and not (api_key or passcode):
            raise Unauthorized("agent credential required: send X-API-Key or X-Agent-Passcode, and X-Agent-Identity")
        if not identity:
            raise Unauthorized("X-Agent-Identity is required: the identity of the agent making the request")
        if identity.startswith(RESERVED_PREFIXES):
            raise Forbidden(f"'{identity}' is reserved for callers and the server's own participants")
        c.auth.check_agent(identity, passcode=passcode, api_key=api_key)  # per-agent mode: must be theirs
        return identity

    Agent = Annotated[str, Depends(require_agent)]

    def orch() -> Any:
        return started().orchestrator

    # --- info -------------------------------------------------------------------------------
    health: dict[str, Any] = {}  # the last LiveKit check: {"rooms", "at", "value"}

    async def livekit_health() -> str:
        """`ok`, or `unreachable: <reason>`: one authenticated RoomService call, bounded in time,
        remembered for LIVEKIT_HEALTH_TTL_S so that GET /api (no credential) cannot flood LiveKit."""
        rooms = ctx.rooms
        if health.get("rooms") is rooms and time.monotonic() - health["at"] < LIVEKIT_HEALTH_TTL_S:
            return health["value"]
        value = await _livekit_health(rooms, LIVEKIT_HEALTH_TIMEOUT_S)
        health.update(rooms=rooms, at=time.monotonic(), value=value)
        return value

    @router.get("", response_model=ApiInfo, summary="API version and status (no credential needed)")
    async def info() -> ApiInfo:
        """`status`: `starting`, `ok`, or `degraded` when LiveKit does not answer (`livekit` says why)."""
        if not ctx.started:
            return ApiInfo(status="starting")
        backend = gateway().backend_label
        livekit = await livekit_health()
        return ApiInfo(
            status="ok" if livekit == "ok" else "degraded",
            functions_backend=backend,
            livekit_url=ctx.settings.livekit_url,
            livekit=livekit,
        )

    IdempotencyKey = Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            max_length=255,
            description="optional: a repeat with the same key (same agent, same body) within 24 h gets the first "
            "response back and changes nothing; the same key with a different body is refused (422)",
        ),
    ]

    async def once(
        agent: str,
        key: str | None,
        route: str,
        req: BaseModel,
        status: int,
        run: Callable[[], Awaitable[BaseModel]],
    ) -> Any:
        """Run an action once per (agent, Idempotency-Key): the first response (status and body) is
        kept in the store and replayed to repeats. Only successes are kept: a refused or failed
        request changed nothing, so a retry with the same key runs it again."""
        if key is None:
            return await run()
        store = orch().store
        fingerprint = hashlib.sha256(f"{route}\n{req.model_dump_json()}".encode()).hexdigest()
        deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
        claim = store.claim_idempotency_key(agent, key, fingerprint)
        while claim.state == "pending" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the first request with this key is still running
            claim = store.claim_idempotency_key(agent, key, fingerprint)
        if claim.state == "mismatch":
            raise InvalidInput("this Idempotency-Key was used for a different request; use a new key for a new one")
        if claim.state == "pending":
            raise Conflict("a request with this Idempotency-Key is still running; repeat it in a moment")
        if claim.state == "done":
            return Response(
                claim.body,
                status_code=claim.status_code or 200,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            result = await run()
        except BaseException:
            with contextlib.suppress(ServiceError):  # the request's own error is the one to answer
                store.release_idempotency_key(agent, key)
            raise
        body = result.model_dump_json()
        try:
            store.finish_idempotency_key(agent, key, status, body)
        except ServiceError as e:  # done, but not remembered: say so in the log, answer the result
            log.warning("idempotency key of %s not saved: %s", agent, e)
        return Response(body, status_code=status, media_type="application/json")

    # --- rooms --------------------------------------------------------------------------------
    @router.post(
        "/rooms/create",
        response_model=CreateCallResponse,
        status_code=201,
        responses=_errors(*AGENT_ERRORS, 502),
        summary="Start a call: its room, the caller's identity and ticket",
    )
    async def create_room(
        req: CreateCallRequest,
        api_key: Annotated[str | None, Header(alias="X-API-Key", description="only with agent_identity")] = None,
        passcode: Annotated[
            str | None, Header(alias="X-Agent-Passcode", description="only with agent_identity")
        ] = None,
        identity: Annotated[
            str | None,
            Header(
                alias="X-Agent-Identity", pattern=IDENTITY_PATTERN, max_length=64, description="with agent_identity"
            ),
        ] = None,
    ) -> CreateCallResponse:
        """A caller starts a call with no credential (it waits for an agent); an agent may start one
        already assigned to itself (`agent_identity` = its own `X-Agent-Identity`, with its credential)."""
        c = started()
        if req.agent_identity is not None:
            agent = require_agent(api_key, passcode, identity)
            if agent != req.agent_identity:
                raise Forbidden("agent_identity must be the identity of the agent making the request")
        call = await c.orchestrator.start_call(req.caller_name, agent_identity=req.agent_identity)
        return CreateCallResponse(
            call=call,
            caller_identity=call.caller_identity,
            caller_ticket=c.auth.caller_ticket(call.call_id, call.caller_identity),
        )

    @router.get(
        "/rooms/{room_name}",
        response_model=RoomView,
        responses=_errors(*AGENT_ERRORS, 404, 502),
        summary="A room's participants and their roles",
    )
    async def get_room(agent: Agent, room_name: Annotated[str, Path(pattern=ROOM_PATTERN, max_length=64)]) -> RoomView:
        o = orch()
        view = _room_view(o, agent, room_name)
        participants = await o.rooms.list_participants(room_name)
        view.participants = [_participant_view(p) for p in participants]
        return view

    @router.post(
        "/rooms/{room_name}/assign",
        response_model=Call,
        responses=_errors(*AGENT_ERRORS, 404),
        summary="Pick up a waiting call",
    )
    async def assign(agent: Agent, room_name: Annotated[str, Path(pattern=ROOM_PATTERN, max_length=64)]) -> Call:
        o = orch()
        call = _call_by_room(o, room_name)
        if o.calls.get(call.call_id) is not None:  # ringing someone else: 409; waiting in the queue: yours
            return await o.calls.accept(call.call_id, agent)
        return await o.assign_agent(call.call_id, agent)

    @router.post(
        "/rooms/{room_name}/end",
        response_model=Call,
        responses=_errors(*AGENT_ERRORS, 404, 502),
        summary="End a call (its agent only); open transfers end as caller_left",
    )
    async def end(agent: Agent, room_name: Annotated[str, Path(pattern=ROOM_PATTERN, max_length=64)]) -> Call:
        o = orch()
        call = _call_by_room(o, room_name)
        if call.agent_identity != agent:
            raise Forbidden(f"{agent} is not the agent on call {call.call_id}")
        return await o.end_call(call.call_id, actor=agent)

    # --- transfers ------------------------------------------------------------------------------
    @router.post(
        "/transfer/initiate",
        response_model=Transfer,
        status_code=201,
        responses=_errors(*AGENT_ERRORS, 404, 409, 500, 502, 504),
        summary="Put the caller on hold and open a consult with the target (agent A only)",
    )
    async def initiate(agent: Agent, req: InitiateRequest, key: IdempotencyKey = None) -> Transfer:
        async def run() -> Transfer:
            return await orch().initiate(req.call_id, agent, req.target, kind=req.target_kind, targets=req.targets)

        return await once(agent, key, "initiate", req, 201, run)

    @router.post(
        "/transfer/complete",
        response_model=CompleteResponse,
        responses=_errors(*AGENT_ERRORS, 404, 409),
        summary="Accept: the target joins the caller's room (target B, or A on B's behalf)",
    )
    async def complete(agent: Agent, req: TransferAction, key: IdempotencyKey = None) -> CompleteResponse:
        async def run() -> CompleteResponse:
            o = orch()
            t = await o.accept(req.transfer_id, actor=agent)
            join = None
            if t.target_kind is TargetKind.agent and agent == t.target:
                try:
                    join = o.agent_token(agent, t.call_room)
                except ServiceError as e:  # e.g. the caller hung up in between: the transfer says so
                    log.info("no join token for %s: %s", agent, e)
            return CompleteResponse(transfer=t, join=join)

        return await once(agent, key, "complete", req, 200, run)

    @router.post(
        "/transfer/cancel",
        response_model=Transfer,
        responses=_errors(*AGENT_ERRORS, 404, 409),
        summary="Cancel: the caller is back with A (agent A only)",
    )
    async def cancel(agent: Agent, req: TransferAction) -> Transfer:
        return await orch().cancel(req.transfer_id, actor=agent)

    @router.post(
        "/transfer/decline",
        response_model=Transfer,
        responses=_errors(*AGENT_ERRORS, 404, 409),
        summary="Decline: the caller is back with A (target B only)",
    )
    async def decline(agent: Agent, req: DeclineRequest) -> Transfer:
        return await orch().decline(req.transfer_id, actor=agent, reason=req.reason)

    @router.post(
        "/transfer/introduce",
        response_model=Transfer,
        responses=_errors(*AGENT_ERRORS, 404, 409),
        summary="Three-way: B joins the caller while A is still there (agent A only); then A leaves",
    )
    async def introduce(agent: Agent, req: TransferAction) -> Transfer:
        """Instead of complete: B is let into the caller's room; once B's microphone is there the hold
        stops and caller, A and B talk. `POST /transfer/leave` (or INTRO_LIMIT_S) ends it: completed."""
        return await orch().introduce(req.transfer_id, actor=agent)

    @router.post(
        "/transfer/leave",
        response_model=Transfer,
        responses=_errors(*AGENT_ERRORS, 404, 409),
        summary="A leaves a three-way introduction: the caller stays with B (agent A only)",
    )
    async def leave(agent: Agent, req: TransferAction) -> Transfer:
        return await orch().leave(req.transfer_id, actor=agent)

    @router.get(
        "/transfer/{transfer_id}",
        response_model=Transfer,
        responses=_errors(*AGENT_ERRORS, 404),
        summary="A transfer's state and event log (its agents only)",
    )
    async def get_transfer(
        agent: Agent, transfer_id: Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
    ) -> Transfer:
        t = orch().get_transfer(transfer_id)
        if agent not in (t.from_agent, t.target):
            raise Forbidden(f"{agent} is not part of transfer {transfer_id}")
        return t

    # --- presence and queues ------------------------------------------------------------------------
    @router.get(
        "/agents",
        response_model=AgentsResponse,
        responses=_errors(*AGENT_ERRORS),
        summary="Every agent's presence, and the queues (skills) with how many are available",
    )
    async def agents(agent: Agent) -> AgentsResponse:
        p = orch().presence
        free = set(p.available())
        return AgentsResponse(
            agents=p.agents(),
            queues=[
                {"name": q, "agents": m, "available": sum(1 for i in m if i in free)} for q, m in p.queues().items()
            ],
        )

    @router.post(
        "/agents/availability",
        response_model=AgentPublic,
        responses=_errors(*AGENT_ERRORS),
        summary="Take calls or not (the requesting agent); available also needs its lobby connection",
    )
    async def availability(agent: Agent, req: AvailabilityRequest) -> AgentPublic:
        """An agent is offered calls and transfers while it is `available`: connected to the lobby
        (`agents-lobby`, a token from POST /api/tokens), taking calls (this), and not busy."""
        view = await orch().presence.set_ready(agent, req.available)
        return view.public()

    @router.get(
        "/calls/waiting",
        response_model=WaitingCallsResponse,
        responses=_errors(*AGENT_ERRORS),
        summary="Calls waiting for an agent that the requesting agent may answer (POST /rooms/{room}/assign)",
    )
    async def waiting_calls(agent: Agent) -> WaitingCallsResponse:
        calls = orch().calls
        return WaitingCallsResponse(
            calls=[
                WaitingCallView(
                    call_id=w.call_id,
                    room=w.room,
                    caller_name=w.caller_name,
                    ringing=w.agent,
                    waiting_since=w.since,
                    place=(calls.place(w.call_id) or {}).get("place", 0),
                )
                for w in calls.waiting()
                if w.agent in (None, agent)
            ]
        )

    # --- summaries and speech ------------------------------------------------------------------------
    @router.post(
        "/summary/generate",
        response_model=CallSummary,
        responses=_errors(*AGENT_ERRORS, 502, 504),
        openapi_extra={MAX_BODY_KEY: MAX_TRANSCRIPT_BODY_BYTES},
        summary="Transcript → CallSummary",
    )
    async def summary(agent: Agent, req: SummaryRequest) -> CallSummary:
        started()
        segments = [TranscriptSegment(speaker=s.speaker, text=s.text, start=s.start, end=s.end) for s in req.segments]
        return await gateway().summarize(SummarizeRequest(segments=segments))

    @router.post(
        "/speech/generate",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "audio, streamed as it is synthesized; the sample rate is in X-Sample-Rate",
                "content": {
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
                "headers": {"X-Sample-Rate": {"schema": {"type": "integer"}, "description": "Hz"}},
            },
            **_errors(*AGENT_ERRORS, 502, 504),
        },
        summary="Text → speech, streamed (WAV or raw 16-bit PCM)",
    )
    async def speech(agent: Agent, req: SpeechApiRequest) -> Response:
        started()
        chunks, rate = await _speech_chunks(req.text)
        headers = {"X-Sample-Rate": str(rate), "Cache-Control": "no-store"}
        if req.format == "wav":
            return StreamingResponse(
                _with_header(_wav_stream_header(rate), chunks), media_type="audio/wav", headers=headers
            )
        headers["X-Audio-Format"] = "s16le; channels=1"
        return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)

    async def _speech_chunks(text: str) -> tuple[AsyncIterator[bytes], int]:
        """Stream from the speaker when it runs here; through the gateway (one WAV) otherwise.
        The first chunk is made before answering, so a refusal is still a proper 4xx/5xx."""
        gw = gateway()
        if getattr(gw.primary, "kind", "local") != "local":
            result = await gw.synthesize_speech(SpeechRequest(text=text))
            pcm, rate = read_wav(result.audio_wav)
            return _blocks(pcm), rate
        it = iter(ctx.services.speaker.synthesize(text))
        first = await asyncio.to_thread(next, it, None)
        if first is None:
            raise InvalidInput("nothing to say: the text has no speakable content")
        return _rest(it, first), first.sample_rate

    # --- tokens ------------------------------------------------------------------------------------
    @router.post(
        "/tokens",
        response_model=TokenResponse,
        responses=_errors(401, 403, 404),
        summary="A LiveKit token for the requester: a caller (with its ticket) or an agent",
    )
    async def tokens(
        req: Annotated[TokenApiRequest, Body()],
        api_key: Annotated[str | None, Header(alias="X-API-Key", description="agents")] = None,
        passcode: Annotated[str | None, Header(alias="X-Agent-Passcode", description="agents")] = None,
        identity: Annotated[
            str | None,
            Header(alias="X-Agent-Identity", pattern=IDENTITY_PATTERN, max_length=64, description="agents"),
        ] = None,
    ) -> TokenResponse:
        """Callers: `{"role": "caller", "call_id", "caller_identity", "ticket"}`, only their own call.
        Agents: `{"role": "agent", "room", "name"}` with their credential; only rooms of calls they are on,
        consults they are part of, and the lobby."""
        c = started()
        if isinstance(req, CallerTokenRequest):
            c.auth.check_caller(req.call_id, req.caller_identity, req.ticket)
            return c.orchestrator.caller_token(req.call_id, req.caller_identity)
        assert isinstance(req, AgentTokenRequest)
        agent = require_agent(api_key, passcode, identity)
        from control.transfer import LOBBY

        if req.room == LOBBY:
            await c.orchestrator.ensure_lobby()  # joins never create rooms
        return c.orchestrator.agent_token(agent, req.room, req.name)

    # --- telephony -------------------------------------------------------------------------------------
    def twilio() -> Any:
        c = started()
        if not c.settings.twilio_configured:
            raise NotAvailable(
                "phone transfers are not set up on this server: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
                "TWILIO_FROM_NUMBER"
            )
        try:
            from functions.telephony import telephony
        except ImportError as e:
            raise NotAvailable(f"telephony is not available in this build: {e}") from e
        return telephony

    @router.post(
        "/twilio/dial",
        response_model=DialApiResponse,
        responses=_errors(*AGENT_ERRORS, 404, 409, 501, 502, 504),
        summary="Dial the phone target of an open phone transfer (agent A only; needs Twilio)",
    )
    async def dial(agent: Agent, req: DialApiRequest, key: IdempotencyKey = None) -> DialApiResponse:
        """One outbound call per transfer: the call placed when the transfer started (or by the first
        dial) is the answer to every later one; Twilio is asked to dial only if the transfer has none."""
        telephony = twilio()
        o = orch()
        t = o.get_transfer(req.transfer_id)
        if agent != t.from_agent:
            raise Forbidden(f"{agent} did not start transfer {t.transfer_id}")
        if t.target_kind is not TargetKind.phone:
            raise InvalidInput(f"transfer {t.transfer_id} is to an agent, not a phone number")

        async def run() -> DialApiResponse:
            current = o.get_transfer(req.transfer_id)
            if current.state is not TransferState.consulting:
                raise IllegalTransition(
                    f"transfer {current.transfer_id} is {current.state.value}; dialing needs 'consulting'"
                )
            to = telephony.normalize_e164(req.to)
            if to != current.target:
                raise InvalidInput("`to` must be the transfer's target number")
            phone = getattr(ctx, "phone", None) or o.phone
            if phone is None:
                raise NotAvailable("phone transfers are not running on this server")
            res = await phone.dial_once(current, dial=gateway().dial_phone)
            return DialApiResponse(call_sid=res.call_sid, to=res.to, status=res.status)

        return await once(agent, key, "dial", req, 200, run)

    @router.get(
        "/twilio/calls",
        response_model=PhoneCallsResponse,
        responses=_errors(*AGENT_ERRORS, 501),
        summary="Phone transfers of the requesting agent, with their Twilio leg status (needs Twilio)",
    )
    async def phone_calls(agent: Agent) -> PhoneCallsResponse:
        twilio()
        o = orch()
        calls = []
        for t in o.store.list_transfers():
            if t.target_kind is not TargetKind.phone or agent not in (t.from_agent, t.target):
                continue
            phone = getattr(ctx, "phone", None) or o.phone
            leg = phone.leg(t.transfer_id) if phone is not None and hasattr(phone, "leg") else None
            calls.append(
                PhoneCallView(
                    transfer_id=t.transfer_id,
                    call_id=t.call_id,
                    to=t.target,
                    state=t.state,
                    call_sid=getattr(leg, "call_sid", None) or None,
                    leg_status=getattr(leg, "status", None) or None,
                )
            )
        return PhoneCallsResponse(calls=calls)

    return router


# --- helpers -------------------------------------------------------------------------------------------


async def _livekit_health(rooms: Any, timeout_s: float) -> str:
    """One authenticated RoomService call (list the lobby): `ok`, or `unreachable: <reason>`."""
    from control.transfer import LOBBY

    if rooms is None:
        return "unreachable: not connected yet"
    try:
        await asyncio.wait_for(rooms.list_rooms([LOBBY]), timeout_s)
    except TimeoutError:
        return f"unreachable: no answer within {timeout_s:g} s"
    except ServiceError as e:
        status = getattr(e.__cause__, "status", None)  # the SDK's error: LiveKit answered, but refused
        if status in (401, 403):
            return f"unreachable: LiveKit refused this server's API key or secret (HTTP {status}, unauthenticated)"
        return f"unreachable: {e.message}"
    except Exception as e:  # a health check reports, it never fails the request
        return f"unreachable: {type(e).__name__}: {e}"
    return "ok"


def _call_by_room(o: Any, room: str) -> Call:
    call = o.store.call_by_room(room)
    if call is None:
        raise NotFound(f"no call in room '{room}'")
    return call


def _room_view(o: Any, agent: str, room: str) -> RoomView:
    """Which room this is, and whether `agent` may see it: the lobby, a waiting call, a call it is on
    or was part of a transfer of, or a consult it is part of."""
    from control.transfer import LOBBY

    if room == LOBBY:
        return RoomView(room=room, kind="lobby", participants=[])
    if call := o.store.call_by_room(room):
        involved = call.status is CallStatus.waiting or call.agent_identity == agent
        involved = involved or any(
            agent in (t.from_agent, t.target) for t in o.store.list_transfers(call_id=call.call_id)
        )
        if not involved:
            raise Forbidden(f"{agent} is not on call {call.call_id}")
        return RoomView(
            room=room,
            kind="call",
            call_id=call.call_id,
            call_status=call.status,
            agent_identity=call.agent_identity,
            participants=[],
        )
    if room.startswith("consult-"):
        try:
            t = o.store.get_transfer(room.removeprefix("consult-"))
        except NotFound:
            t = None
        if t is not None and t.consult_room == room:
            if agent not in (t.from_agent, t.target):
                raise Forbidden(f"{agent} is not part of transfer {t.transfer_id}")
            return RoomView(
                room=room,
                kind="consult",
                call_id=t.call_id,
                transfer_id=t.transfer_id,
                transfer_state=t.state,
                participants=[],
            )
    raise NotFound(f"no room '{room}'")


def _participant_view(p: Any) -> ParticipantView:
    from livekit import api

    role = dict(p.attributes).get("role", "")
    if p.kind == api.ParticipantInfo.Kind.SIP:
        role = "phone"
    if role not in ("caller", "agent", "service", "phone"):
        role = "unknown"
    audio = any(t.type == api.TrackType.AUDIO and not t.muted for t in p.tracks)
    return ParticipantView(
        identity=p.identity,
        name=p.name,
        role=role,
        publishing_audio=audio,
        hidden=bool(p.permission.hidden),
        joined_at=p.joined_at,
    )


def _wav_stream_header(rate: int) -> bytes:
    """A WAV header for a stream of unknown length (sizes set to the maximum, as streaming servers do)."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", unknown)
    )


async def _with_header(header: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield header
    async for c in chunks:
        yield c


async def _blocks(pcm: bytes, size: int = 9600) -> AsyncIterator[bytes]:
    for i in range(0, len(pcm), size):
        yield pcm[i : i + size]


async def _rest(it: Any, first: Any) -> AsyncIterator[bytes]:
    """The first chunk, then the rest as the speaker makes them (in a worker thread)."""
    try:
        yield first.data
        while (chunk := await asyncio.to_thread(next, it, None)) is not None:
            if chunk.sample_rate != first.sample_rate:
                log.warning("speaker changed sample rate mid-stream; stream cut")
                return
            yield chunk.data
    except ServiceError as e:  # the status line is sent already: end the stream short
        log.warning("speech stream cut: %s", e)
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
