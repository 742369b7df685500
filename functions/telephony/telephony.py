"""Outbound phone calls through Twilio: number validation and the `TwilioDialer`.

`normalize_e164` is the gate in front of every dial: it returns the E.164 form of a
number or raises `InvalidInput` with a reason a person can act on (nothing is dialed).
It is a small explicit rule set, not a numbering-plan database: E.164 shape, no short
codes or emergency numbers, no NANP reserved/premium ranges, and a table of premium
and shared-cost prefixes for the countries agents most often dial. Twilio's
geographic permissions (console → Voice → Settings) remain the last line of defence.

`TwilioDialer` builds its SDK client lazily, never reads the environment itself (the
settings do), and converts every SDK error into `ProviderError` at this boundary.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from functions.errors import ConfigError, InvalidInput, ProviderError, ProviderTimeout
from functions.models import DialRequest, DialResult
from functions.settings import Settings

if TYPE_CHECKING:
    from twilio.rest import Client

    from functions.services import Services

# Characters people type between digits; anything else (letters, ';', ',', 'w', '#', '*',
# extensions, SIP URIs) is refused rather than guessed at.
_SEPARATORS = re.compile(r"[\s\-.()/\u00a0]")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
MAX_INPUT_CHARS = 32

EMERGENCY = frozenset({"112", "911", "999", "000", "110", "119", "100", "101", "102", "108", "15", "17", "18"})

# Country code + national prefix of premium-rate / shared-cost / adult / televoting ranges.
PREMIUM_PREFIXES: dict[str, str] = {
    "+1900": "US/Canada 900 premium-rate",
    "+449": "UK 09 premium-rate",
    "+44871": "UK 0871 service number",
    "+44872": "UK 0872 service number",
    "+44873": "UK 0873 service number",
    "+4470": "UK 070 personal number",
    "+3381": "France 081 shared-cost",
    "+3382": "France 082 shared-cost",
    "+3389": "France 089 premium-rate",
    "+49900": "Germany 0900 premium-rate",
    "+49137": "Germany 0137 televoting",
    "+49180": "Germany 0180 shared-cost",
    "+3989": "Italy 89 premium-rate",
    "+34803": "Spain 803 premium-rate",
    "+34806": "Spain 806 premium-rate",
    "+34807": "Spain 807 premium-rate",
    "+34905": "Spain 905 televoting",
    "+3190": "Netherlands 090x premium-rate",
    "+3290": "Belgium 090x premium-rate",
    "+4190": "Switzerland 090x premium-rate",
    "+4390": "Austria 090x premium-rate",
    "+4393": "Austria 093x premium-rate",
    "+35315": "Ireland 15xx premium-rate",
    "+6119": "Australia 19xx premium-rate",
    "+64900": "New Zealand 0900 premium-rate",
}


def normalize_e164(number: object) -> str:
    """Return `number` in E.164 (`+` and 8-15 digits) or raise InvalidInput saying why."""
    if not isinstance(number, str):
        raise InvalidInput("a phone number must be text like +14155550123")
    raw = number.strip()
    if not raw:
        raise InvalidInput("the phone number is empty")
    if len(raw) > MAX_INPUT_CHARS:
        raise InvalidInput(f"'{raw[:MAX_INPUT_CHARS]}…' is too long to be a phone number")
    compact = _SEPARATORS.sub("", raw)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    digits = compact.removeprefix("+")
    if not digits.isdigit() or not digits.isascii():
        raise InvalidInput(
            f"'{raw}' is not a phone number: use the international format with digits only, like +14155550123"
        )
    if not compact.startswith("+"):
        if digits in EMERGENCY:
            raise InvalidInput(f"{digits} is an emergency number; it cannot be a transfer target")
        if len(digits) <= 6:
            raise InvalidInput(f"{digits} is a short code; only full international numbers can be dialed")
        raise InvalidInput(f"'{raw}' has no country code: write it in international format, like +14155550123")
    if not _E164.match(compact):
        raise InvalidInput(f"'{raw}' is not a valid international number (a '+', a country code, 8-15 digits)")
    if compact.startswith("+1"):
        _check_nanp(compact)
    for prefix, what in PREMIUM_PREFIXES.items():
        if compact.startswith(prefix):
            raise InvalidInput(f"{compact} is a {what} number; premium and shared-cost numbers are not dialed")
    return compact


def _check_nanp(e164: str) -> None:
    national = e164[2:]
    if len(national) != 10:
        raise InvalidInput(f"{e164} is not a valid US/Canada number: it needs 10 digits after +1")
    area, exchange = national[:3], national[3:6]
    if area[0] in "01" or exchange[0] in "01":
        raise InvalidInput(f"{e164} is not a valid US/Canada number (area code and exchange cannot start with 0/1)")
    if area[1:] == "11" or exchange[1:] == "11":
        raise InvalidInput(f"{e164} uses an N11 service code (like 411 or 911); it cannot be dialed")
    if exchange == "976":
        raise InvalidInput(f"{e164} is in a US/Canada 976 premium-rate exchange; premium numbers are not dialed")


# --- webhook URLs ------------------------------------------------------------------------------


def public_base(settings: Settings) -> str:
    base = settings.public_base_url.strip().rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ConfigError("PUBLIC_BASE_URL must be set to this app's public http(s) URL so Twilio can reach webhooks")
    return base


def webhook_url(settings: Settings, name: str, transfer_id: str, **query: str) -> str:
    """Absolute URL of one of our Twilio webhooks; exactly the string Twilio signs."""
    return f"{public_base(settings)}/twilio/{name}?{urlencode({'tid': transfer_id, **query})}"


# --- the dialer --------------------------------------------------------------------------------


STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


class TwilioDialer:
    """`Dialer` over Twilio Programmable Voice (REST `Calls` resource)."""

    name = "twilio"

    def __init__(self, settings: Settings) -> None:
        if not settings.twilio_configured:
            raise ConfigError(
                "phone transfers need Twilio: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER"
            )
        self.settings = settings
        self.from_number = normalize_from(settings.twilio_from_number)
        self._client: Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                from twilio.rest import Client

                s = self.settings
                # environment={}: region/edge/credentials come from Settings only, never os.environ.
                client = Client(s.twilio_account_sid, s.twilio_auth_token.get_secret_value(), environment={})
                if s.twilio_api_base_url:
                    client.api.base_url = s.twilio_api_base_url.rstrip("/")
                self._client = client
            return self._client

    def dial(
        self, request: DialRequest, *, status_callback: str, answer_url: str, amd_callback: str | None = None
    ) -> DialResult:
        """Place the call. `answer_url` serves the whisper; `status_callback` gets every progress event.

        With TWILIO_MACHINE_DETECTION on, answering machines are detected: asynchronously (the
        whisper starts at once, the verdict goes to `amd_callback`) when that URL is given,
        otherwise synchronously (the verdict arrives with the answer webhook as `AnsweredBy`).
        """
        to = normalize_e164(request.to)
        kwargs: dict = {
            "to": to,
            "from_": self.from_number,
            "url": answer_url,
            "method": "POST",
            "status_callback": status_callback,
            "status_callback_method": "POST",
            "status_callback_event": STATUS_EVENTS,
            "timeout": self.settings.twilio_ring_timeout_s,
        }
        if self.settings.twilio_machine_detection:
            kwargs["machine_detection"] = "Enable"
            if amd_callback:
                kwargs.update(
                    async_amd="true", async_amd_status_callback=amd_callback, async_amd_status_callback_method="POST"
                )
        call = self._call("place the call", lambda: self.client.calls.create(**kwargs))
        return DialResult(call_sid=call.sid, to=to, status=str(call.status or "queued"))

    def hangup(self, call_sid: str) -> None:
        """End the call whatever its state (`completed` also cancels a ringing call)."""
        self._call("hang up", lambda: self.client.calls(_check_sid(call_sid)).update(status="completed"))

    def update_twiml(self, call_sid: str, twiml: str) -> None:
        """Replace what a live call is doing with new TwiML (not in the `Dialer` protocol)."""
        self._call("update the call", lambda: self.client.calls(_check_sid(call_sid)).update(twiml=twiml))

    def _call(self, what: str, op):
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            return op()
        except TwilioRestException as e:
            raise ProviderError(f"Twilio refused to {what}: HTTP {e.status} code {e.code}: {e.msg}") from e
        except TwilioException as e:
            raise ProviderError(f"Twilio could not {what}: {e}") from e
        except OSError as e:  # requests' ConnectionError/Timeout are OSErrors
            if "timed out" in str(e).lower():
                raise ProviderTimeout(f"Twilio did not answer in time trying to {what}") from e
            raise ProviderError(f"Twilio is unreachable trying to {what}: {e}") from e


_SID_RE = re.compile(r"^CA[0-9a-fA-F]{32}$")


def _check_sid(call_sid: str) -> str:
    if not _SID_RE.match(call_sid or ""):
        raise InvalidInput("not a Twilio call SID (CA followed by 32 hex digits)")
    return call_sid


def normalize_from(number: str) -> str:
    try:
        return normalize_e164(number)
    except InvalidInput as e:
        raise ConfigError(f"TWILIO_FROM_NUMBER: {e.message}") from e


def make_dialer(settings: Settings) -> TwilioDialer:
    if not settings.twilio_configured:
        raise ConfigError(
            "no dialer: set TWILIO_ACCOUNT_SID (with TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER) for phone transfers"
        )
    return TwilioDialer(settings)


def dial_phone(req: DialRequest, services: Services) -> DialResult:
    """Function entry point: dial `req.to` for transfer `req.transfer_id` with this app's webhooks."""
    to = normalize_e164(req.to)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", req.transfer_id):
        raise InvalidInput("transfer_id must be 1-64 letters, digits, '_' or '-'")
    s = services.settings
    answer = webhook_url(s, "answer", req.transfer_id)
    status = webhook_url(s, "status", req.transfer_id)
    amd = webhook_url(s, "amd", req.transfer_id) if s.twilio_machine_detection else None
    dialer = services.dialer
    request = req.model_copy(update={"to": to})
    if isinstance(dialer, TwilioDialer):
        return dialer.dial(request, status_callback=status, answer_url=answer, amd_callback=amd)
    return dialer.dial(request, status_callback=status, answer_url=answer)
