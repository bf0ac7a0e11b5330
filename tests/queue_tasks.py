"""A task routed to a named queue by its declaration (imported by the queue test and its worker)."""

from __future__ import annotations

from yadtq import task


@task(queue="email")
def send_email(to: str) -> str:
    return f"sent to {to}"
