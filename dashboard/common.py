"""What every page shares: the cached data source, settings, the viewer's time zone, guarded actions."""

from __future__ import annotations

from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from dashboard.source import Source
from yadtq.config import Settings
from yadtq.errors import YADTQError


@st.cache_resource
def source() -> Source:
    """Where every page reads and acts: the HTTP API when `YADTQ_DASHBOARD_API` is set (nothing opens
    Redis or the broker then), else Redis and the broker. One for every session."""
    settings = Settings.from_env()
    if settings.dashboard_api:
        from dashboard.api_source import ApiSource

        return ApiSource(settings)
    from dashboard.redis_source import RedisSource
    from yadtq.broker.backlog import for_settings
    from yadtq.client.client import YADTQ

    return RedisSource(YADTQ(settings), for_settings(settings))


def settings() -> Settings:
    return source().settings


def viewer_tz() -> tzinfo | None:
    """The browser's time zone (so times read as the viewer's clock); the server's when unknown."""
    name = st.context.timezone
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return None


def requeue(task_id: str) -> None:
    try:
        st.session_state["notice"] = ("success", f"Requeued {source().requeue(task_id)}")
    except YADTQError as exc:
        st.session_state["notice"] = ("error", f"Not requeued: {exc}")


def cancel(task_id: str) -> None:
    try:
        source().cancel(task_id)
        st.session_state["notice"] = ("success", f"Cancelled {task_id}")
    except YADTQError as exc:
        st.session_state["notice"] = ("error", f"Not cancelled: {exc}")


def show_notice() -> None:
    """The outcome of the last action, once."""
    notice = st.session_state.pop("notice", None)
    if notice:
        kind, text = notice
        (st.success if kind == "success" else st.error)(text)


def open_task(task_id: str) -> None:
    """Shows `task_id` on the Tasks page."""
    st.session_state["task"] = task_id.strip()
