"""Shared fixtures: one real livekit-server per test session (free ports, random keys),
settings pointed at it, and a fresh SQLite store per test."""

from __future__ import annotations

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
