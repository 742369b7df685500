"""A local stand-in for Twilio's REST host that records what the real twilio SDK sends.

Point a `TwilioDialer` at it with `twilio_api_base_url=recorder.url`: the SDK builds and
sends its real HTTP requests (form-encoded, basic auth), and the recorder answers with
JSON shaped like Twilio's (a Call resource, or Twilio's error body). Tests then assert
exactly which parameters Twilio was asked to use. Nothing of the SDK is mocked.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_CALLS = re.compile(r"^/2010-04-01/Accounts/(AC\w+)/Calls\.json$")
_CALL = re.compile(r"^/2010-04-01/Accounts/(AC\w+)/Calls/(CA\w+)\.json$")


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, list[str]]
    auth: tuple[str, str] | None
    headers: dict[str, str] = field(default_factory=dict)

    def one(self, name: str) -> str:
        """The single value of a form parameter (fails if absent or repeated)."""
        values = self.form[name]
        assert len(values) == 1, f"{name} sent {len(values)} times: {values}"
        return values[0]


class TwilioRecorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.calls: dict[str, dict] = {}
        self.fail_next: tuple[int, int, str] | None = None  # (HTTP status, Twilio code, message)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> TwilioRecorder:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TwilioRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queries for tests ---------------------------------------------------------------------
    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and _CALLS.match(r.path)]

    def updates(self, call_sid: str | None = None) -> list[Recorded]:
        out = []
        for r in self.requests:
            m = _CALL.match(r.path)
            if r.method == "POST" and m and (call_sid is None or m.group(2) == call_sid):
                out.append(r)
        return out

    # --- the server --------------------------------------------------------------------------------
    def _handler(self):
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                path = urlsplit(self.path).path
                auth = None
                if (h := self.headers.get("Authorization", "")).startswith("Basic "):
                    user, _, pw = base64.b64decode(h[6:]).decode().partition(":")
                    auth = (user, pw)
                rec = Recorded(self.command, path, parse_qs(body, keep_blank_values=True), auth, dict(self.headers))
                fail = recorder.record(rec)
                if fail:
                    status, code, message = fail
                    return self._json(status, {"code": code, "message": message, "status": status})
                if self.command == "POST" and (m := _CALLS.match(path)):
                    return self._json(201, recorder.create_call(m.group(1), rec))
                if self.command == "POST" and (m := _CALL.match(path)):
                    call = recorder.calls.get(m.group(2))
                    if call is None:
                        return self._json(404, {"code": 20404, "message": "The requested resource was not found"})
                    if "Status" in rec.form:
                        call["status"] = rec.form["Status"][0]
                    return self._json(200, call)
                return self._json(404, {"code": 20404, "message": f"no route {path}", "status": 404})

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def record(self, rec: Recorded) -> tuple[int, int, str] | None:
        """Keep one request; the failure to answer it with (`fail_next`, used once), if any."""
        with self._lock:
            self.requests.append(rec)
            fail, self.fail_next = self.fail_next, None
        return fail

    def create_call(self, account: str, rec: Recorded) -> dict:
        """What Twilio's `Calls.json` create answers: a queued call, kept for later updates."""
        sid = "CA" + secrets.token_hex(16)
        call = {
            "sid": sid,
            "account_sid": account,
            "to": rec.form.get("To", [""])[0],
            "from": rec.form.get("From", [""])[0],
            "status": "queued",
            "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
        }
        with self._lock:
            self.calls[sid] = call
        return call
