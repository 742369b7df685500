"""The control plane's side of B questioning the briefing: each question and answer a consult job
reports (`QAReport`) is checked against the state, stored with its transfer (`Store.add_qa`), and sent
to A and B in the consult room as `transfer.qa`, and on the app's event bus (the desks).

The job answered and spoke already (`media.briefing_qa`): nothing here is on the answer's path."""

from __future__ import annotations

import logging

from control.bus import EventBus
from control.rooms import Rooms
from control.store import Store
from functions.errors import NotFound
from functions.events import QAAnswered, QAPayload
from functions.media_protocol import QAReport
from functions.models import BriefingExchange, TransferState

log = logging.getLogger(__name__)


class ConsultQA:
    def __init__(self, store: Store, rooms: Rooms, bus: EventBus) -> None:
        self.store = store
        self.rooms = rooms
        self.bus = bus

    async def on_report(self, report: QAReport) -> BriefingExchange | None:
        """Store and announce one exchange; a report about a consult that is not open (or not this
        call's) is dropped: the job may be a stale one, and nobody is left to see it."""
        try:
            t = self.store.get_transfer(report.transfer_id)
        except NotFound:
            return None
        if t.call_id != report.call_id or t.state is not TransferState.consulting:
            log.info("Q/A for transfer %s dropped: it is %s", t.transfer_id, t.state.value)
            return None
        exchange = report.exchange.model_copy(update={"transfer_id": t.transfer_id})
        self.store.add_qa(exchange)
        msg = QAAnswered(payload=QAPayload(transfer_id=t.transfer_id, call_id=t.call_id, exchange=exchange))
        self.bus.publish(msg)
        await self.rooms.send(t.consult_room, msg, [t.from_agent, t.target])
        return exchange
