"""Batch-linked alerts to manufacturers: content (JSON for machines, HTML for people) and the file outbox.

Scoping is security: an alert is built only from rows about the recipient's own products —
the caller passes frames already filtered to one manufacturer, and ``build_alert`` checks it.
Cases are summarised without patient keys, narratives or other companies' products.
An alert's id is a hash of its content (generation time excluded), so the same signals,
batches and states give the same alert and the same file; a change gives a new alert that
names the one it supersedes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from reports.rendering import render

# A batch "stands out" when its rate per 10k packs is this many times the median of the
# product's other implicated batches and it has at least this many linked cases.
BATCH_CONCENTRATION_RATIO = 3.0
BATCH_CONCENTRATION_MIN_CASES = 3


@dataclass(frozen=True)
class Alert:
    alert_id: str
    manufacturer_id: str
    content: dict
    content_hash: str


def recommended_actions(batches: list[dict]) -> list[str]:
    """What the manufacturer should do, from the batch evidence (documented thresholds above)."""
    actions = []
    for b in batches:
        if b.get("cold_chain_excursions"):
            actions.append(
                f"Quarantine remaining stock of lot {b['lot_number']} and investigate its {b['cold_chain_excursions']} "
                f"cold-chain excursion(s) (max {b.get('max_temp_c')} °C) before further release."
            )
    rates = [b["cases_per_10k_packs"] for b in batches if b.get("cases_per_10k_packs") is not None]
    for b in batches:
        rate = b.get("cases_per_10k_packs")
        others = sorted(r for r in rates if r is not rate)
        if rate is None or not others or b["linked_cases"] < BATCH_CONCENTRATION_MIN_CASES:
            continue
        median = others[len(others) // 2]
        if median == 0 or rate >= BATCH_CONCENTRATION_RATIO * median:
            actions.append(
                f"Investigate lot {b['lot_number']}: {rate} linked cases per 10,000 packs delivered against a median of "
                f"{median} for the product's other implicated lots; consider a recall if a quality defect is confirmed."
            )
    if not actions:
        actions.append("Evaluate the product-level signal; no single lot stands out in the linked cases.")
    return actions


def build_alert(manufacturer: dict, signals: pl.DataFrame, batches: pl.DataFrame, cases: pl.DataFrame,
                data_lock_point) -> Alert:
    """Assemble one manufacturer's alert from frames already scoped to its products."""
    mid = manufacturer["manufacturer_id"]
    foreign = signals.filter(pl.col("manufacturer_id") != mid)
    if foreign.height:
        raise ValueError(f"alert for {mid} was handed signals of other manufacturers: {foreign['signal_id'].to_list()}")
    own_products = set(signals["product_id"].to_list())
    if batches.height and not set(batches["product_id"].to_list()) <= own_products:
        raise ValueError(f"alert for {mid} was handed batches of products it does not own")
    items = []
    for s in signals.sort("signal_id").to_dicts():
        sig_batches = batches.filter(pl.col("signal_id") == s["signal_id"]).drop("signal_id").to_dicts()
        sig_cases = cases.filter(pl.col("signal_id") == s["signal_id"]).select(
            "case_id", "received_on", "onset_date", "age_band", "sex", "serious", "seriousness", "outcome", "source",
            "batch_id", "link_method",
        ).to_dicts()
        items.append({
            "signal_id": s["signal_id"], "product_id": s["product_id"], "product_name": s["product_name"],
            "ingredient": s["ingredient"], "pt": s["pt"], "status": s["status"], "methods": list(s["methods"]),
            "figures": json.loads(s["figures"]) if s["figures"] else {}, "first_detected": s["first_detected"],
            "batches": sig_batches, "cases": sig_cases, "recommended_actions": recommended_actions(sig_batches),
        })
    content = {
        "manufacturer": {"manufacturer_id": mid, "name": manufacturer["name"]},
        "data_lock_point": data_lock_point,
        "signals": items,
    }
    canonical = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return Alert(alert_id=f"ALR-{mid}-{digest[:12]}", manufacturer_id=mid, content=content, content_hash=digest)


def write_alert(alert: Alert, folder: Path, generated_at: str, supersedes: str | None) -> tuple[Path, Path]:
    """Write ``<alert_id>.json`` and ``.html`` under the manufacturer's outbox folder."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"alert_id": alert.alert_id, "generated_at": generated_at, "supersedes": supersedes,
                "content_hash": alert.content_hash, **alert.content}
    json_path = folder / f"{alert.alert_id}.json"
    html_path = folder / f"{alert.alert_id}.html"
    json_path.write_text(json.dumps(document, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    html_path.write_text(render("alert.html.j2", a=document), encoding="utf-8")
    return json_path, html_path
