"""HTTP webhook: POST the alert JSON, signed with HMAC-SHA256 over the exact body bytes.

Headers: ``X-PVTrace-Signature: sha256=<hex>`` (key = the manufacturer's secret), ``Idempotency-Key``
(``<alert_id>/webhook``: the same on every re-send, so the receiver can drop duplicates),
``X-PVTrace-Alert-Id``, ``X-PVTrace-Event`` (``alert.new`` / ``alert.update``).
The secret comes from the environment variable named in ``manufacturers.csv``
``alert_webhook_secret_env`` (default ``PVTRACE_WEBHOOK_SECRET_<MANUFACTURER_ID>``, non-alphanumerics
as ``_``); only names starting ``PVTRACE_WEBHOOK_SECRET_`` are accepted, so reference data cannot
point the signer at another secret. Without URL or secret the channel is skipped, never unsigned.
2xx = sent; 408, 425, 429, 5xx and network errors are transient (retried); other 3xx/4xx are
permanent (redirects are not followed). Plain ``http://`` only to loopback unless
``PVTRACE_WEBHOOK_ALLOW_HTTP=1``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from reports.channels import ChannelError, Sent

SECRET_PREFIX = "PVTRACE_WEBHOOK_SECRET_"
SIGNATURE_HEADER = "X-PVTrace-Signature"
TRANSIENT_STATUS = {408, 425, 429}


def default_secret_env(manufacturer_id: str) -> str:
    return SECRET_PREFIX + re.sub(r"[^A-Z0-9]", "_", manufacturer_id.upper())


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: constant-time comparison of the signature header."""
    return hmac.compare_digest(sign(secret, body), header or "")


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class WebhookChannel:
    name = "webhook"

    def __init__(self, env: Mapping[str, str] | None = None, timeout_s: float = 10.0, transport=None):
        self.env = os.environ if env is None else env
        self.timeout_s, self.transport = timeout_s, transport

    def _secret_env(self, delivery) -> str:
        return delivery.alert_webhook_secret_env or default_secret_env(delivery.manufacturer_id)

    def unavailable(self, delivery) -> str | None:
        url = (delivery.alert_webhook_url or "").strip()
        if not url:
            return "no alert_webhook_url for this manufacturer"
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            return f"not an http(s) URL: {url!r}"
        if (
            parts.scheme == "http"
            and not _loopback(parts.hostname)
            and self.env.get("PVTRACE_WEBHOOK_ALLOW_HTTP") != "1"
        ):
            return "plain http refused (use https, or set PVTRACE_WEBHOOK_ALLOW_HTTP=1)"
        name = self._secret_env(delivery)
        if not re.fullmatch(SECRET_PREFIX + r"[A-Z0-9_]+", name):
            return f"secret variable name {name!r} refused (must start with {SECRET_PREFIX})"
        if not self.env.get(name):
            return f"webhook secret not set (environment variable {name})"
        return None

    def endpoint(self, delivery) -> str:
        return (delivery.alert_webhook_url or "").strip()

    def send(self, delivery) -> Sent:
        url = self.endpoint(delivery)
        body = delivery.document.encode("utf-8")
        kind = "update" if json.loads(delivery.document).get("supersedes") else "new"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self.env[self._secret_env(delivery)], body),
            "Idempotency-Key": delivery.idempotency_key,
            "X-PVTrace-Alert-Id": delivery.alert_id,
            "X-PVTrace-Event": f"alert.{kind}",
            "User-Agent": "pvtrace-alerts/1",
        }
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False, transport=self.transport) as client:
                response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise ChannelError(f"{type(e).__name__}: {e}", destination=url) from e
        code = response.status_code
        if 200 <= code < 300:
            return Sent(destination=url, response_code=str(code), message_id=response.headers.get("X-Request-Id"))
        retry_after = response.headers.get("Retry-After")
        raise ChannelError(
            f"HTTP {code}: {response.text[:200]}",
            permanent=not (code >= 500 or code in TRANSIENT_STATUS),
            response_code=str(code),
            destination=url,
            retry_after_s=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
