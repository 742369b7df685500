"""The UI's `gr.HTML` components. Their markup is a static shell; everything inside is
drawn by the scripts in `ui/static/` with DOM APIs (`textContent`, never
`innerHTML` with data), so no user text is ever interpolated into HTML or JS.

- `LiveKitRoom`: the reusable room widget: connection state, participants with
  speaking indicators, mute/unmute, leave, remote audio, reconnects, microphone errors.
  Other panels drive it through `WT.room(slot)` in the browser.
- `WtPanel`: one part of a tab (caller phone, agent desk, live captions, timeline,
  calls dashboard), bound to a browser-side controller by `kind` and `slot`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
import gradio.component_meta as _component_meta

STATIC_DIR = Path(__file__).resolve().parent / "static"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LIVEKIT_CLIENT = PROJECT_ROOT / "node_modules" / "livekit-client" / "dist" / "livekit-client.umd.js"
STATIC_ROUTE = "wt-static"  # relative: works at `/`, behind a proxy prefix and through a share link
# In load order: the generated protocol and the pure decisions first, then the scripts using them.
SCRIPTS = [
    "protocol.js",
    "desk_logic.js",
    "livekit_room.js",
    "caller_phone.js",
    "agent_desk.js",
    "calls_board.js",
    "page.js",
]

# js_on_load: wait for the scripts from `head` (a second component may run before they load).
BOOT_JS = (STATIC_DIR / "boot.js").read_text()


def _version(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    except OSError:
        return "missing"


def head_html() -> str:
    """Script tags for the page head: livekit-client first, then the UI's scripts."""
    tags = [f'<script src="{STATIC_ROUTE}/livekit-client.umd.js?v={_version(LIVEKIT_CLIENT)}"></script>']
    tags += [f'<script src="{STATIC_ROUTE}/{name}?v={_version(STATIC_DIR / name)}"></script>' for name in SCRIPTS]
    return "".join(tags)


@contextlib.contextmanager
def _no_stub_files() -> Iterator[None]:
    """Gradio writes a `.pyi` next to any module that subclasses a component; not here."""
    original = _component_meta.create_or_modify_pyi
    _component_meta.create_or_modify_pyi = lambda *_args, **_kwargs: None
    try:
        yield
    finally:
        _component_meta.create_or_modify_pyi = original


with _no_stub_files():

    class _WtHtml(gr.HTML):
        """Shared shell: a root element the browser controller fills in."""

        def __init__(self, *, kind: str, slot: str, server_functions: list[Callable] | None = None, **kwargs) -> None:
            super().__init__(
                value="",
                html_template='<div class="wt-shell" data-wt="1"></div>',
                js_on_load=BOOT_JS,
                head=head_html(),
                server_functions=server_functions,
                apply_default_css=False,
                container=False,
                padding=False,
                wt_kind=kind,
                wt_slot=slot,
                **kwargs,
            )

    class LiveKitRoom(_WtHtml):
        """A LiveKit room in the browser, driven by the panel that owns `slot`."""

        def __init__(self, slot: str, *, label: str = "Room", hint: str = "") -> None:
            super().__init__(
                kind="room",
                slot=slot,
                wt_label=label,
                wt_hint=hint,
                elem_id=f"wt-room-{slot}",
                elem_classes=["wt-room"],
            )

    class WtPanel(_WtHtml):
        """One part (`kind`) of a tab, sharing a controller with the other parts of `slot`."""

        def __init__(self, kind: str, slot: str, *, server_functions: list[Callable] | None = None, **props) -> None:
            super().__init__(
                kind=kind,
                slot=slot,
                server_functions=server_functions,
                elem_id=f"wt-{kind}-{slot}",
                elem_classes=["wt-panel", f"wt-panel-{kind}"],
                **{f"wt_{k}": v for k, v in props.items()},
            )
