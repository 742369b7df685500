"""Shared fixtures: one real livekit-server per test session (free ports, random keys),
settings pointed at it, and a fresh SQLite store per test."""

from __future__ import annotations

import logging

import pytest

from functions.livekit_server import EmbeddedLiveKit
from functions.settings import Settings, load_settings


@pytest.fixture(scope="session")
def livekit_server():
    with EmbeddedLiveKit(load_settings(livekit_port=0)) as server:
        yield server


@pytest.fixture
def settings(livekit_server, tmp_path) -> Settings:
    return livekit_server.settings_for(
        load_settings(
            data_dir=tmp_path,
            ring_timeout_s=20,
            accept_timeout_s=60,
            join_timeout_s=10,
            openai_api_key="",
            openai_base_url="",
            twilio_account_sid="",
        )
    )


def pytest_unconfigure(config):
    # After the last test the event loop is closed, but the SDK's FFI thread may still deliver
    # events for rooms torn down at exit; each would log "error putting to queue". The test
    # results are already printed; keep them the last thing in the output.
    logging.getLogger("livekit").setLevel(logging.CRITICAL)
