"""What every page shares: the cached client, settings, the viewer's time zone, guarded actions."""

from __future__ import annotations

from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from yadtq.broker.backlog import Backlog, for_settings
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import YADTQError


@st.cache_resource
def client() -> YADTQ:
    return YADTQ(Settings.from_env())


@st.cache_resource
def backlog() -> Backlog | None:
    """Asks the broker for end offsets (records not read yet); one consumer for every session."""
    return for_settings(Settings.from_env())


def settings() -> Settings:
    return client().settings


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
        st.session_state["notice"] = ("success", f"Requeued {client().requeue(task_id)}")
    except YADTQError as exc:
        st.session_state["notice"] = ("error", f"Not requeued: {exc}")


def cancel(task_id: str) -> None:
    try:
        client().cancel(task_id, by="dashboard")
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
