"""A local OpenAI-compatible HTTP server for tests: records every request and answers as scripted.

It listens on 127.0.0.1 on a free port (real sockets: the openai 3.x SDK is driven end to end).
- POST /v1/chat/completions: answers from `chat_script` (a list consumed in order; the last entry
  repeats). An entry is a dict: {"content": str} → a normal completion; {"status": int, "error": str}
  → an error; {"delay": seconds} → wait first; {"refuse_json_schema": True} → llama-cpp-python's
  refusal of `response_format.type == "json_schema"` (500), answering normally otherwise.
- POST /v1/audio/transcriptions: parses the multipart form and calls `transcribe(wav_bytes, fields)`
  → dict (the JSON answer). Tests plug the real Whisper in, so this is a real local STT endpoint.
- POST /v1/audio/speech: calls `speak(body)` → iterable of PCM byte blocks, streamed with chunked
  transfer encoding as they come (tests plug piper in at 24 kHz).
- `faults`: a provider that breaks mid-call. {"chat" | "transcriptions" | "speech": "fail" | "hang"}:
  "fail" answers 500 at once, "hang" holds the request for `hang_s` (longer than any client timeout)
  and then answers 500; set and cleared while the server runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    form: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def chat_completion(content: str, model: str = "test-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    form: dict[str, list[str]] = {}
    files: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            files[name] = payload
        else:
            form.setdefault(name, []).append(payload.decode())
    return form, files


class OpenAIRecorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.chat_script: list[dict[str, Any]] = [{"content": "{}"}]
        self.transcribe: Callable[[bytes, dict[str, list[str]]], dict[str, Any]] | None = None
        self.speak: Callable[[dict[str, Any]], Iterable[bytes]] | None = None
        self.chat_calls = 0
        self.faults: dict[str, str] = {}
        self.hang_s = 60.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIRecorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                rec = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()})
                ctype = self.headers.get("content-type", "")
                if ctype.startswith("application/json"):
                    rec.json = json.loads(body or b"{}")
                elif ctype.startswith("multipart/form-data"):
                    rec.form, rec.files = parse_multipart(ctype, body)
                recorder.requests.append(rec)
                try:
                    kind = "chat" if self.path.endswith("/chat/completions") else self.path.rsplit("/", 1)[-1]
                    fault = recorder.faults.get(kind)
                    if fault == "hang":
                        time.sleep(recorder.hang_s)
                    if fault in ("fail", "hang"):
                        self._send_json(500, {"error": {"message": f"scripted {fault}", "type": "server_error"}})
                        return
                    if self.path.endswith("/chat/completions"):
                        self._chat(rec)
                    elif self.path.endswith("/audio/transcriptions"):
                        self._transcription(rec)
                    elif self.path.endswith("/audio/speech"):
                        self._speech(rec)
                    else:
                        self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send_json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chat(self, rec: Recorded) -> None:
                script = recorder.chat_script
                step = script[min(recorder.chat_calls, len(script) - 1)]
                recorder.chat_calls += 1
                if step.get("delay"):
                    time.sleep(step["delay"])
                fmt = (rec.json or {}).get("response_format") or {}
                if step.get("refuse_json_schema") and fmt.get("type") == "json_schema":
                    msg = (
                        "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
                    )
                    self._send_json(500, {"error": {"message": msg, "type": "internal_server_error"}})
                    return
                if "status" in step:
                    self._send_json(step["status"], {"error": {"message": step.get("error", "scripted error")}})
                    return
                self._send_json(200, chat_completion(step.get("content", "{}"), (rec.json or {}).get("model", "")))

            def _transcription(self, rec: Recorded) -> None:
                if recorder.transcribe is None:
                    self._send_json(501, {"error": {"message": "no transcriber plugged in"}})
                    return
                self._send_json(200, recorder.transcribe(rec.files.get("file", b""), rec.form))

            def _speech(self, rec: Recorded) -> None:
                if recorder.speak is None:
                    self._send_json(501, {"error": {"message": "no speaker plugged in"}})
                    return
                self.send_response(200)
                self.send_header("content-type", "audio/pcm")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for block in recorder.speak(rec.json or {}):
                    if block:
                        self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]
