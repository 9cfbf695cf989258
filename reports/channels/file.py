"""The file outbox: ``<output>/alerts/<manufacturer_id>/<alert_id>.json`` and ``.html``."""

from __future__ import annotations

import re
from pathlib import Path

from reports.alerts import write_alert
from reports.channels import ChannelError, Sent

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class FileChannel:
    name = "file"

    def __init__(self, root: Path):
        self.root = Path(root)

    def unavailable(self, delivery) -> str | None:
        return None

    def endpoint(self, delivery) -> str:
        return str(self.root / delivery.manufacturer_id)

    def send(self, delivery) -> Sent:
        # the manufacturer id names a folder: refuse anything that could climb out of the outbox
        if not _SAFE_ID.match(delivery.manufacturer_id):
            raise ChannelError(
                f"unsafe manufacturer id for a folder name: {delivery.manufacturer_id!r}", permanent=True
            )
        try:
            json_path, _ = write_alert(delivery.document, self.root / delivery.manufacturer_id)
        except OSError as e:  # disk full, permissions: transient from the outbox's point of view
            raise ChannelError(f"{type(e).__name__}: {e}", destination=self.endpoint(delivery)) from e
        return Sent(destination=str(json_path.parent), response_code="written", message_id=json_path.name)
