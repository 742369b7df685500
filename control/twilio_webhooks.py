"""Twilio webhooks for phone transfers, as a FastAPI router mounted next to the UI.

    POST /twilio/answer?tid=…   the phone leg answered: whisper + accept/decline prompt (TwiML)
    POST /twilio/gather?tid=…   the digit pressed (or none): accept / decline / re-prompt (TwiML)
    POST /twilio/status?tid=…   call progress: ringing, in-progress, completed, busy, no-answer, failed
    POST /twilio/amd?tid=…      asynchronous answering-machine verdict
    POST /twilio/dial?tid=…     the SIP bridge (`<Dial>`) ended

Every request must carry a valid `X-Twilio-Signature` for the exact public URL Twilio
called (PUBLIC_BASE_URL + path + query) and its form body: otherwise 403, nothing read
or changed. Each signed request is applied once: a replay (Twilio retries, or anyone
re-sending a captured request) gets the first response back and changes nothing.
Bad input gets a 4xx, never a 500. Every refusal is JSON in the API's error shape
(`{"detail", "error"}`); a database that cannot be written (read-only, disk full) is 503
with Retry-After, so Twilio's retry can succeed once it is fixed. Bodies are limited to
32 KiB while they stream in (also by `control.body_limit` in front of the whole app).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from twilio.request_validator import RequestValidator

from control.body_limit import read_body
from control.phone_bridge import (
    DECLINED,
    GONE,
    MAX_PROMPTS,
    NO_INPUT,
    NO_SIP,
    NO_SIP_REASON,
    Leg,
    TwilioPhoneLeg,
    goodbye_twiml,
    hangup_twiml,
    outcome_for_answered_by,
    outcome_for_status,
    reprompt_twiml,
    whisper_twiml,
)
from control.store import storage_error
from control.transfer import LOBBY, TransferOrchestrator
from functions.errors import IllegalTransition, InvalidInput, PayloadTooLarge, ServiceError
from functions.events import PhoneLegChanged, PhoneLegPayload
from functions.models import Transfer, TransferState
from functions.settings import Settings
from functions.telephony.telephony import public_base

log = logging.getLogger(__name__)
S = TransferState
MAX_BODY = 32 * 1024
XML = "application/xml"
_TID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
_STATUSES = frozenset(
    {"queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"}
)
_REJECT_NAMES = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 413: "PayloadTooLarge", 503: "NotReady"}
KEY_FIELDS = ("CallSid", "CallStatus", "Digits", "AnsweredBy", "DialCallStatus")

Params = dict[str, list[str]]
Handler = Callable[[Transfer, Leg, Params, dict[str, str]], Awaitable[tuple[int, str]]]


class _Multi(dict):
    """parse_qs output in the shape RequestValidator reads (`getall`)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _one(params: Params, name: str) -> str:
    values = params.get(name) or [""]
    return values[0]


class _Late:
    """Resolve the orchestrator / phone leg per request, so the router can be mounted before
    they exist (they are built inside the server's event loop). Not ready yet → 503."""

    def __init__(self, source: object, what: str) -> None:
        self._source, self._what = source, what

    def __getattr__(self, name: str):
        target = self._source() if callable(self._source) else self._source
        if target is None:
            raise _Reject(503, f"{self._what} is not running yet")
        return getattr(target, name)


def twilio_router(
    orch: TransferOrchestrator | Callable[[], TransferOrchestrator | None],
    settings: Settings,
    phone_leg: TwilioPhoneLeg | Callable[[], TwilioPhoneLeg | None],
) -> APIRouter:
    """Routes under /twilio. `orch` and `phone_leg` may be the objects or zero-argument
    callables returning them (or None while the app is still starting)."""
    router = APIRouter(prefix="/twilio", tags=["twilio"])
    orch = _Late(orch, "the transfer orchestrator")  # type: ignore[assignment]
    phone_leg = _Late(phone_leg, "the phone leg")  # type: ignore[assignment]
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    base = public_base(settings)  # ConfigError at mount time, naming PUBLIC_BASE_URL

    async def verify(request: Request) -> Params:
        if not settings.twilio_auth_token.get_secret_value():
            raise _Reject(403, "webhooks are disabled: TWILIO_AUTH_TOKEN is not set")
        try:
            body = await read_body(request, MAX_BODY)  # counted as it streams: never read whole first
        except (PayloadTooLarge, InvalidInput) as e:
            raise _Reject(413 if isinstance(e, PayloadTooLarge) else 400, e.message) from e
        try:
            text = body.decode("utf-8")
            params = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=200)
        except ValueError as e:
            raise _Reject(400, f"malformed form body: {e}") from e
        url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not validator.validate(url, _Multi(params), signature):
            raise _Reject(403, "invalid or missing X-Twilio-Signature")
        return params

    async def run(request: Request, name: str, handler: Handler) -> Response:
        try:
            return await _run(request, name, handler)
        except _Reject as e:
            return _error(e.status, e.message, _REJECT_NAMES.get(e.status, "BadRequest"), retryable=e.status == 503)
        except ServiceError as e:
            # 4xx: the request is wrong (Twilio does not retry); 5xx: our side failed, e.g. the
            # database is read-only (503, retryable); a provider behind us failed (502).
            code = e.status_code if 400 <= e.status_code < 500 or e.status_code == 503 else 502
            return _error(code, e.message, type(e).__name__, retryable=e.retryable)
        except sqlite3.Error as e:  # a store that did not convert its own error: still JSON
            err = storage_error(e)
            return _error(err.status_code, err.message, type(err).__name__, retryable=err.retryable)

    async def _run(request: Request, name: str, handler: Handler) -> Response:
        params = await verify(request)
        tid = request.query_params.get("tid", "")
        if not _TID.match(tid):
            raise _Reject(400, "missing or malformed tid")
        call_sid = _one(params, "CallSid")
        if not _SID.match(call_sid):
            raise _Reject(400, "missing or malformed CallSid")
        _ = orch.store, phone_leg.legs  # both running, or 503 (Twilio retries)

        key = hashlib.sha256(
            "|".join([name, request.url.query, *(_one(params, f) for f in KEY_FIELDS)]).encode()
        ).hexdigest()
        if not phone_leg.legs.claim(key):
            return await _replayed(key)
        try:
            transfer = orch.get_transfer(tid)
            leg = phone_leg.leg(tid)
            if leg is None:
                raise _Reject(404, f"transfer {tid} has no phone leg")
            if leg.call_sid and leg.call_sid != call_sid:
                raise _Reject(403, "this call does not belong to that transfer")
            if not leg.call_sid:  # webhook raced the REST response of calls.create
                phone_leg.record_status(tid, call_sid, "")
            status, body = await handler(transfer, leg, params, dict(request.query_params))
        except BaseException:
            # Not applied: a corrected retry may be. (If the store itself is failing, the
            # release may fail too; the key then stays claimed and Twilio's retry waits.)
            with contextlib.suppress(ServiceError):
                phone_leg.legs.release(key)
            raise
        phone_leg.legs.save_response(key, status, body)
        return _response(status, body)

    async def _replayed(key: str) -> Response:
        for _ in range(50):  # the first delivery may still be running
            if stored := phone_leg.legs.response(key):
                return _response(*stored)
            await asyncio.sleep(0.1)
        return Response(status_code=204)

    # --- outcomes ---------------------------------------------------------------------------------
    async def end(t: Transfer, state: TransferState, reason: str, *, by_target: bool = False) -> bool:
        """End the transfer (caller back with A); False if it had already ended."""
        try:
            if by_target and state is S.declined:
                await orch.decline(t.transfer_id, actor=t.target, reason=reason)
            else:
                await orch.finish(t.transfer_id, state, actor="twilio", reason=reason)
            return True
        except IllegalTransition:
            return False

    async def publish(t: Transfer, leg: Leg | None) -> None:
        """Live status of the outbound leg, for A's UI (lobby) and the app's event bus."""
        if leg is None:
            return
        t = orch.get_transfer(t.transfer_id)
        msg = PhoneLegChanged(
            payload=PhoneLegPayload(
                transfer_id=t.transfer_id,
                call_id=t.call_id,
                target=t.target,
                call_sid=leg.call_sid,
                status=leg.status,
                answered_by=leg.answered_by,
                state=t.state,
            )
        )
        try:
            await orch.rooms.send(LOBBY, msg, [t.from_agent])
        except (ServiceError, OSError) as e:
            log.warning("phone leg status not delivered: %s", e)
        orch.bus.publish(msg)

    # --- handlers -----------------------------------------------------------------------------------
    async def on_answer(t: Transfer, leg: Leg, params: Params, query: dict[str, str]) -> tuple[int, str]:
        answered_by = _one(params, "AnsweredBy")  # present with synchronous AMD
        leg = phone_leg.record_status(t.transfer_id, _one(params, "CallSid"), "in-progress", answered_by) or leg
        if not t.is_open:
            phone_leg.mark_closing(t.transfer_id)
            return 200, goodbye_twiml(GONE)
        if outcome := outcome_for_answered_by(answered_by):
            phone_leg.mark_closing(t.transfer_id)
            await end(t, *outcome)
            await publish(t, leg)
            return 200, hangup_twiml()
        return 200, whisper_twiml(phone_leg.url("gather", t.transfer_id, attempt="1"), leg.brief)

    async def on_gather(t: Transfer, leg: Leg, params: Params, query: dict[str, str]) -> tuple[int, str]:
        digits = _one(params, "Digits")
        attempt = int(query["attempt"]) if query.get("attempt", "").isdigit() else 1
        if not t.is_open:
            phone_leg.mark_closing(t.transfer_id)
            return 200, goodbye_twiml(GONE)
        if digits == "1":
            if not phone_leg.can_bridge:
                phone_leg.mark_closing(t.transfer_id)
                await end(t, S.failed, NO_SIP_REASON)
                return 200, goodbye_twiml(NO_SIP)
            bridge = phone_leg.bridge(t)  # built first: a bad LIVEKIT_SIP_URI must not leave a half-accept
            try:
                await orch.accept(t.transfer_id, actor=t.target)
            except IllegalTransition:
                phone_leg.mark_closing(t.transfer_id)
                return 200, goodbye_twiml(GONE)
            return 200, bridge
        if digits == "2":
            phone_leg.mark_closing(t.transfer_id)
            await end(t, S.declined, "declined on the phone", by_target=True)
            return 200, goodbye_twiml(DECLINED)
        if attempt < MAX_PROMPTS:
            return 200, reprompt_twiml(phone_leg.url("gather", t.transfer_id, attempt=str(attempt + 1)))
        phone_leg.mark_closing(t.transfer_id)
        await end(t, S.timed_out, "no answer to the accept/decline prompt")
        return 200, goodbye_twiml(NO_INPUT)

    async def on_status(t: Transfer, leg: Leg, params: Params, query: dict[str, str]) -> tuple[int, str]:
        status = _one(params, "CallStatus")
        if status not in _STATUSES:
            raise _Reject(400, "unknown CallStatus")
        leg = phone_leg.record_status(t.transfer_id, _one(params, "CallSid"), status, _one(params, "AnsweredBy")) or leg
        outcome = outcome_for_status(status, orch.get_transfer(t.transfer_id).state, settings.twilio_ring_timeout_s)
        if outcome:
            await end(t, *outcome)
        await publish(t, leg)
        return 204, ""

    async def on_amd(t: Transfer, leg: Leg, params: Params, query: dict[str, str]) -> tuple[int, str]:
        answered_by = _one(params, "AnsweredBy")
        if not answered_by:
            raise _Reject(400, "missing AnsweredBy")
        leg = phone_leg.record_status(t.transfer_id, _one(params, "CallSid"), "", answered_by) or leg
        if outcome := outcome_for_answered_by(answered_by):
            await end(t, *outcome)  # rollback hangs the call up through the REST API
        await publish(t, leg)
        return 204, ""

    async def on_dial(t: Transfer, leg: Leg, params: Params, query: dict[str, str]) -> tuple[int, str]:
        dial_status = _one(params, "DialCallStatus")
        phone_leg.mark_closing(t.transfer_id)
        current = orch.get_transfer(t.transfer_id)
        if current.state is S.completing and dial_status not in ("completed", "answered"):
            await end(current, S.failed, f"the SIP bridge into the call failed ({dial_status or 'unknown'})")
        return 200, hangup_twiml()

    for name, handler in (
        ("answer", on_answer),
        ("gather", on_gather),
        ("status", on_status),
        ("amd", on_amd),
        ("dial", on_dial),
    ):

        async def endpoint(request: Request, _name: str = name, _handler: Handler = handler) -> Response:
            return await run(request, _name, _handler)

        router.add_api_route(f"/{name}", endpoint, methods=["POST"], name=f"twilio_{name}", include_in_schema=False)

    return router


def _error(status: int, detail: str, error: str, *, retryable: bool = False) -> Response:
    """A refusal in the API's error shape (Twilio shows the body in its debugger)."""
    headers = {"Retry-After": "1"} if retryable and status == 503 else None
    return JSONResponse({"detail": detail, "error": error}, status_code=status, headers=headers)


def _response(status: int, body: str) -> Response:
    if status == 204 or not body:
        return Response(status_code=204)
    return Response(body, status_code=status, media_type=XML)
