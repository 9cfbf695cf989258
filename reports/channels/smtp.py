"""E-mail over SMTP (stdlib ``smtplib``): plain text + HTML alternative + the JSON as attachment.

Server settings and credentials come from the environment only: ``PVTRACE_SMTP_HOST`` (unset =
channel skipped), ``PVTRACE_SMTP_PORT`` (default 25, 587 with STARTTLS, 465 with SSL),
``PVTRACE_SMTP_STARTTLS=1`` / ``PVTRACE_SMTP_SSL=1``, ``PVTRACE_SMTP_USER`` and
``PVTRACE_SMTP_PASSWORD``, ``PVTRACE_SMTP_FROM``. Recipients: ``alert_email`` of the manufacturer
(several separated by ``,`` or ``;``). The ``Message-ID`` is derived from the alert id, so a re-send
after a crash carries the same id (receivers and archives dedupe on it); an update carries
``In-Reply-To``/``References`` to the alert it supersedes, so mail clients thread them.
Refusals with a 5xx code for every recipient, or of the message itself, are permanent; anything
else (connection refused, timeouts, 4xx, authentication) is transient and retried.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate

from reports.alerts import render_alert_html, render_alert_text
from reports.channels import ChannelError, Sent, split_recipients

MESSAGE_ID_DOMAIN = "alerts.pvtrace"


def message_id(alert_id: str) -> str:
    return f"<{alert_id}@{MESSAGE_ID_DOMAIN}>"


def build_message(delivery, sender: str, recipients: list[str]) -> EmailMessage:
    doc = json.loads(delivery.document)
    lots = sorted({t["lot_number"] for t in doc.get("batch_traceability", {}).values() if t.get("lot_number")})
    msg = EmailMessage()
    prefix = "Update: " if doc.get("supersedes") else ""
    msg["Subject"] = f"[PV Trace] {prefix}safety alert {doc['alert_id']}: {len(doc['signals'])} signal(s)" + (
        f", lots {', '.join(lots[:5])}{'…' if len(lots) > 5 else ''}" if lots else ""
    )
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(doc["alert_id"])
    if doc.get("supersedes"):
        msg["In-Reply-To"] = message_id(doc["supersedes"])
        msg["References"] = message_id(doc["supersedes"])
    msg["X-PVTrace-Alert-Id"] = doc["alert_id"]
    msg["X-PVTrace-Idempotency-Key"] = delivery.idempotency_key
    msg.set_content(render_alert_text(doc))
    msg.add_alternative(render_alert_html(doc), subtype="html")
    msg.add_attachment(
        delivery.document.encode("utf-8"), maintype="application", subtype="json", filename=f"{doc['alert_id']}.json"
    )
    return msg


class SmtpChannel:
    name = "email"

    def __init__(self, env: Mapping[str, str] | None = None, timeout_s: float = 20.0):
        self.env = os.environ if env is None else env
        self.timeout_s = timeout_s

    def _flag(self, key: str) -> bool:
        return self.env.get(key, "").lower() in ("1", "true", "yes")

    def unavailable(self, delivery) -> str | None:
        if not split_recipients(delivery.alert_email):
            return "no alert_email for this manufacturer"
        if not self.env.get("PVTRACE_SMTP_HOST"):
            return "SMTP not configured (PVTRACE_SMTP_HOST not set)"
        return None

    def endpoint(self, delivery) -> str:
        return f"{self.env.get('PVTRACE_SMTP_HOST')}:{self._port()}"

    def _port(self) -> int:
        if self.env.get("PVTRACE_SMTP_PORT"):
            return int(self.env["PVTRACE_SMTP_PORT"])
        return 465 if self._flag("PVTRACE_SMTP_SSL") else 587 if self._flag("PVTRACE_SMTP_STARTTLS") else 25

    def send(self, delivery) -> Sent:
        recipients = split_recipients(delivery.alert_email)
        sender = self.env.get("PVTRACE_SMTP_FROM") or "PV Trace alerts <pvtrace-alerts@localhost>"
        msg = build_message(delivery, sender, recipients)
        host, port = self.env["PVTRACE_SMTP_HOST"], self._port()
        destination = f"smtp://{host}:{port} to {', '.join(recipients)}"
        try:
            cls = smtplib.SMTP_SSL if self._flag("PVTRACE_SMTP_SSL") else smtplib.SMTP
            with cls(host, port, timeout=self.timeout_s) as smtp:
                if self._flag("PVTRACE_SMTP_STARTTLS") and not self._flag("PVTRACE_SMTP_SSL"):
                    smtp.starttls(context=ssl.create_default_context())
                if self.env.get("PVTRACE_SMTP_USER"):
                    smtp.login(self.env["PVTRACE_SMTP_USER"], self.env.get("PVTRACE_SMTP_PASSWORD", ""))
                refused = smtp.send_message(msg, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            raise ChannelError(
                f"all recipients refused: {e.recipients}",
                permanent=all(c >= 500 for c in codes),
                response_code=str(max(codes)),
                destination=destination,
            ) from e
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
            raise ChannelError(
                f"{type(e).__name__}: {e.smtp_code} {e.smtp_error!r}",
                permanent=e.smtp_code >= 500,
                response_code=str(e.smtp_code),
                destination=destination,
            ) from e
        except smtplib.SMTPResponseException as e:  # includes authentication failures: fix the env, stays pending
            raise ChannelError(
                f"{type(e).__name__}: {e.smtp_code} {e.smtp_error!r}",
                response_code=str(e.smtp_code),
                destination=destination,
            ) from e
        except (smtplib.SMTPException, OSError) as e:
            raise ChannelError(f"{type(e).__name__}: {e}", destination=destination) from e
        note = f"refused by some recipients: {refused}" if refused else None
        return Sent(destination=destination, response_code="250", message_id=msg["Message-ID"], note=note)
