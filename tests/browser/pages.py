"""What a user does and sees in each tab, as Playwright steps (selectors in one place)."""

from __future__ import annotations

from playwright.async_api import Page, expect

T = 20_000  # ms: LiveKit connects, the orchestrator starts hold music and the briefing
VIEWPORT = {"width": 1280, "height": 800}  # the layout the README's screenshots show


class AgentPage:
    def __init__(self, page: Page, slot: str) -> None:
        self.page, self.slot = page, slot
        self.desk = page.locator(f"#wt-desk-{slot}")
        self.call_room = page.locator(f"#wt-room-{slot}-call")
        self.consult = page.locator(f"#wt-room-{slot}-consult")
        self.live = page.locator(f"#wt-live-{slot}")
        self.timeline = page.locator(f"#wt-timeline-{slot}")

    async def open(self, url: str) -> AgentPage:
        await self.page.goto(url)
        await self.page.get_by_role("tab", name=f"Agent {self.slot.upper()}").click()
        await expect(self.desk.locator(".wt-signin")).to_be_visible(timeout=T)
        return self

    async def sign_in(self, identity: str, name: str, passcode: str = "") -> None:
        await self.desk.locator("input[name=identity]").fill(identity)
        await self.desk.locator("input[name=name]").fill(name)
        await self.desk.locator("input[name=passcode]").fill(passcode)
        await self.desk.locator(".wt-signin").click()
        await expect(self.desk.get_by_test_id("agent-name")).to_have_text(name, timeout=T)

    async def go_available(self) -> None:
        await self.desk.get_by_role("button", name="Go available").click()
        await expect(self.desk.get_by_test_id("availability")).to_have_text("Available", timeout=T)

    async def accept_call_from(self, caller_name: str) -> None:
        row = self.desk.locator(".wt-incoming-call", has_text=caller_name)
        await expect(row).to_be_visible(timeout=T)
        await row.get_by_role("button", name="Accept").click()
        await expect(self.desk.get_by_test_id("call-caller")).to_have_text(caller_name, timeout=T)
        await expect(self.call_room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)

    async def start_transfer_to(self, identity: str) -> None:
        select = self.desk.locator("select[name=target]")
        await expect(select.locator(f"option[value='{identity}']")).to_have_count(1, timeout=T)
        await select.select_option(identity)
        await self.desk.get_by_role("button", name="Start warm transfer").click()

    def room_person(self, room, identity_prefix: str):
        return room.locator(f".wt-person[data-identity^='{identity_prefix}']")


class CallerPage:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.panel = page.locator("#wt-caller-caller")
        self.room = page.locator("#wt-room-caller")
        self.headline = self.panel.get_by_test_id("caller-headline")

    async def open(self, url: str) -> CallerPage:
        await self.page.goto(url)
        await self.page.get_by_role("tab", name="Caller").click()
        await expect(self.panel.locator(".wt-call-btn")).to_be_visible(timeout=T)
        return self

    async def call(self, name: str, agent: str | None) -> None:
        await self.panel.locator("input[name=caller-name]").fill(name)
        select = self.panel.locator("select[name=agent]")
        if agent:
            await expect(select.locator(f"option[value='{agent}']")).to_have_count(1, timeout=T)
            await select.select_option(agent)
        await self.panel.locator(".wt-call-btn").click()
