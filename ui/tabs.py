"""The tabs: Agent A, Agent B, Caller and Calls. Agent A and Agent B are the same
component with different default identities; any signed-in agent can be A or B."""

from __future__ import annotations

import gradio as gr

from ui.backend import UiBackend
from ui.widgets import livekit_room, wt_panel


def render_agent_tab(backend: UiBackend, slot: str, *, identity: str, name: str) -> None:
    """Sign-in, availability, incoming calls, the call and consult rooms, transfer
    controls, the incoming-transfer card, captions, summary and the call timeline."""
    fns = backend.agent_functions()
    with gr.Row(equal_height=False, elem_classes=["wt-agent-tab"]):
        with gr.Column(scale=5, min_width=360):
            wt_panel("desk", slot, server_functions=fns, identity=identity, name=name)
        with gr.Column(scale=6, min_width=420):
            with gr.Row(equal_height=False):
                livekit_room(f"{slot}-call", label="Call with the caller", hint="Accept a call to join it.")
                livekit_room(f"{slot}-consult", label="Consult", hint="Opens during a warm transfer.")
            wt_panel("live", slot)
            wt_panel("timeline", slot)


def render_caller_tab(backend: UiBackend) -> None:
    """Name, agent pick, one-click call; who you talk to, hold, transfer; mute, hang up."""
    with gr.Row(equal_height=False, elem_classes=["wt-caller-tab"]):
        with gr.Column(scale=3, min_width=360):
            wt_panel("caller", "caller", server_functions=backend.caller_functions())
        with gr.Column(scale=2, min_width=320):
            livekit_room("caller", label="Your call", hint="Connects when you call.")


def render_calls_tab(backend: UiBackend) -> None:
    """Agents, calls and transfers, live (for signed-in agents)."""
    wt_panel("calls", "calls", server_functions=backend.agent_functions())


def render_page_panel(backend: UiBackend, *, agents: list[str], callers: list[str]) -> None:
    """Outside the tabs, so always mounted (Gradio mounts a tab's components when it is first
    opened): resumes the sign-ins and the call a reload left (whatever tab is shown), and says
    which role has the microphone when one page plays several."""
    wt_panel(
        "page",
        "page",
        server_functions=backend.agent_functions() + backend.caller_functions(),
        agents=" ".join(agents),
        callers=" ".join(callers),
    )


def build_blocks(backend: UiBackend) -> gr.Blocks:
    with gr.Blocks(title="Warm Transfer") as blocks:
        with gr.Row(elem_classes=["wt-header"]):
            gr.HTML(
                '<div class="wt-brand"><span class="wt-logo">⇄</span> Warm Transfer'
                '<span class="wt-tagline">LiveKit calls with warm hand-offs between agents</span></div>',
                apply_default_css=False,
                js_on_load=None,
            )
        render_page_panel(backend, agents=["a", "b"], callers=["caller"])
        with gr.Tabs(elem_id="wt-tabs"):
            with gr.Tab("Agent A", id="agent-a", elem_id="tab-agent-a", render_children=True):
                render_agent_tab(backend, "a", identity="agent-a", name="Agent A")
            with gr.Tab("Agent B", id="agent-b", elem_id="tab-agent-b", render_children=True):
                render_agent_tab(backend, "b", identity="agent-b", name="Agent B")
            with gr.Tab("Caller", id="caller", elem_id="tab-caller", render_children=True):
                render_caller_tab(backend)
            with gr.Tab("Calls", id="calls", elem_id="tab-calls", render_children=True):
                render_calls_tab(backend)
    return blocks
