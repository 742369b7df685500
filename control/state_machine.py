"""The warm-transfer state machine: which state may follow which.

    idle ──► consulting ──► completing ──► completed
      │          │   │           │              ▲
      │          │   │           └──► failed / caller_left  (B never reached the caller)
      │          │   └──► introducing ──────────┘  (three-way: B joins with A still there; A leaves)
      │          │            └──► failed / caller_left / target_left / cancelled  (caller stays with A)
      │          ├──► cancelled / declined / timed_out / target_left / caller_left
      └──► failed ◄──────────────┘

A queue or hunt-list transfer stays `consulting` while its offer moves from one agent to the next
(the store's `retarget`, logged as events without a state change); only when nobody is left does
a decline or no answer end it (`declined`, `timed_out`).

Terminal states have no successors. The store applies a transition only if it is
listed here, atomically with its event-log entry.
"""

from __future__ import annotations

from functions.errors import IllegalTransition
from functions.models import TERMINAL_STATES, TransferState

S = TransferState

ALLOWED: dict[TransferState, frozenset[TransferState]] = {
    S.idle: frozenset({S.consulting, S.failed, S.cancelled}),
    S.consulting: frozenset(
        {S.completing, S.introducing, S.cancelled, S.declined, S.timed_out, S.target_left, S.caller_left, S.failed}
    ),
    S.completing: frozenset({S.completed, S.failed, S.caller_left}),
    S.introducing: frozenset({S.completed, S.failed, S.caller_left, S.target_left, S.cancelled}),
    **{t: frozenset() for t in TERMINAL_STATES},
}

# Outcomes after which the caller is back with agent A.
ROLLBACK_STATES = frozenset({S.cancelled, S.declined, S.timed_out, S.target_left, S.failed})


def check_transition(current: TransferState, new: TransferState) -> None:
    if new not in ALLOWED[current]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[current])) or "none (terminal state)"
        raise IllegalTransition(f"cannot go from '{current.value}' to '{new.value}'; allowed: {allowed}")
