"""The UI's `gr.HTML` components. Their markup is a static shell; everything inside is
drawn by the ES modules in `ui/static/` with DOM APIs (`textContent`, never
`innerHTML` with data), so no user text is ever interpolated into HTML or JS.

- `livekit_room()`: the reusable room widget: connection state, participants with
  speaking indicators, mute/unmute, leave, remote audio, reconnects, microphone errors.
  Other panels drive it through `room(slot)` (ui/static/livekit_room.js) in the browser.
- `wt_panel()`: one part of a tab (caller phone, agent desk, live captions, timeline,
  calls dashboard), bound to a browser-side controller by `kind` and `slot`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

import gradio as gr

STATIC_DIR = Path(__file__).resolve().parent / "static"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# livekit-client's ES module build (npm ships it), imported by ui/static/livekit_room.js as
# ./vendor/livekit-client.esm.mjs: the static route (ui/__init__.py) serves it under that name.
LIVEKIT_CLIENT = PROJECT_ROOT / "node_modules" / "livekit-client" / "dist" / "livekit-client.esm.mjs"
VENDOR = {f"vendor/{path.name}": path for path in (LIVEKIT_CLIENT, LIVEKIT_CLIENT.with_suffix(".mjs.map"))}
STATIC_ROUTE = "wt-static"  # relative: works at `/`, behind a proxy prefix and through a share link
# The entry module: it imports every other module of ui/static (ES modules, loaded once per page).
ENTRY = "main.js"

# js_on_load: wait for the modules from `head` (a component may run before they have loaded).
BOOT_JS = (STATIC_DIR / "boot.js").read_text()


def _version() -> str:
    """A hash of every browser file the page loads: it changes whenever one of them does."""
    files = [*sorted(STATIC_DIR.rglob("*.js")), LIVEKIT_CLIENT]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def head_html() -> str:
    """The page head's loader of the UI's ES modules.

    Gradio copies a component's `head` scripts into the page keeping only `src` (not `type`), so a
    `<script type="module">` there would run as a classic script; an inline classic script may
    still `import()` a module, and the browser evaluates each module once per page whichever
    components' heads ask. Cache busting: the entry's URL carries a hash of every browser file,
    and the modules it imports (plain relative URLs, which carry no query) are served with
    `Cache-Control: no-cache` and an ETag (ui/__init__.py), so the browser revalidates each one
    and never runs a stale module. (An import map of hashed URLs is not an option: Gradio's own
    page is modules already, and browsers before 2025 take no import map once a module has loaded.)
    """
    url = f"./{STATIC_ROUTE}/{ENTRY}?v={_version()}"  # "./": a bare "wt-static/…" would be a package name
    failed = 'console.error("The warm-transfer UI modules did not load:", e)'
    return f'<script>import("{url}").catch((e) => {failed});</script>'


def _wt_html(*, kind: str, slot: str, server_functions: list[Callable] | None = None, **kwargs) -> gr.HTML:
    """Shared shell: a root element the browser controller fills in.

    A plain `gr.HTML`, not a subclass: Gradio's component metaclass writes a `.pyi` stub next to
    the module of any class deriving from a component (`gradio.component_meta.create_or_modify_pyi`,
    with no public switch to turn that off), so these are functions returning a configured `gr.HTML`.
    """
    return gr.HTML(
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


def livekit_room(slot: str, *, label: str = "Room", hint: str = "") -> gr.HTML:
    """A LiveKit room in the browser, driven by the panel that owns `slot`."""
    return _wt_html(
        kind="room",
        slot=slot,
        wt_label=label,
        wt_hint=hint,
        elem_id=f"wt-room-{slot}",
        elem_classes=["wt-room"],
    )


def wt_panel(kind: str, slot: str, *, server_functions: list[Callable] | None = None, **props) -> gr.HTML:
    """One part (`kind`) of a tab, sharing a controller with the other parts of `slot`."""
    return _wt_html(
        kind=kind,
        slot=slot,
        server_functions=server_functions,
        elem_id=f"wt-{kind}-{slot}",
        elem_classes=["wt-panel", f"wt-panel-{kind}"],
        **{f"wt_{k}": v for k, v in props.items()},
    )
