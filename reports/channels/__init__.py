"""Alert delivery channels: the file outbox, e-mail over SMTP, an HMAC-signed HTTP webhook.

A channel sends one alert document to one manufacturer. It never decides retries: it either
returns :class:`Sent`, raises :class:`ChannelError` (``permanent`` or transient), or says via
``unavailable`` that it is not configured (the delivery is then ``skipped`` with that reason).
Settings come from the manufacturer's reference row (recipients, URL, the *name* of the secret's
environment variable) and from environment variables (SMTP server, credentials, secrets): no
secret is ever read from a file or written to the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sent:
    destination: str | None
    response_code: str | None = None
    message_id: str | None = None
    note: str | None = None


class ChannelError(Exception):
    """A delivery that did not go through; ``permanent`` ones are not retried automatically."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        response_code: str | None = None,
        destination: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.permanent, self.response_code = permanent, response_code
        self.destination, self.retry_after_s = destination, retry_after_s


class Channel(Protocol):
    name: str

    def unavailable(self, delivery) -> str | None:
        """Why this channel cannot deliver to this manufacturer (not configured), or None."""

    def endpoint(self, delivery) -> str:
        """Where it would go (a channel that is down is not tried again for the same endpoint in a run)."""

    def send(self, delivery) -> Sent:
        """Deliver ``delivery.document`` (the exact JSON text) once."""


def split_recipients(value: str | None) -> list[str]:
    return [r for r in (value or "").replace(";", ",").replace(" ", ",").split(",") if r]
