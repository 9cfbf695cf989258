"""Batch-linked alerts to manufacturers: content (JSON for machines, HTML for people).

Scoping is security: an alert is built only from rows about the recipient's own products —
the caller passes frames already scoped to one manufacturer (``warehouse.queries.alert_evidence``
scopes in SQL), and ``build_alert`` checks it again and copies only whitelisted fields, so a
column added upstream (a patient key, a narrative, another drug) cannot ride along.

Identity: an alert's *state* is, per signal, its id, status and set of implicated batches.
``content_hash`` hashes the state; the id hashes the state and the alert it updates, so the
same signals, batch sets and statuses give the same alert (and no new delivery), and any change
gives a new alert that names the previous one (``supersedes``) and says what changed.
Figures and cases are a snapshot at the time of the alert, not part of its identity: a new case
on an already implicated batch does not re-alert, a newly implicated batch does.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from reports.rendering import render

# A lot is named in a recommended action only when a batch-level test says it stands out for the
# signal's event: the signal is that batch's own (level 'batch'), or the register holds a batch-level
# signal (heterogeneity scan or MaxSPRT; not refuted or closed) on the same product, PT and batch.
# Ranking first by cases per 10k packs is no such test: a lot with 9 of a product-wide signal's cases
# is not named. Statuses under which a batch signal no longer singles its lot out:
DISMISSED_STATUSES = ("refuted", "closed")
# An alert carries the signals at or above the priority threshold (signals.priority) and those an analyst
# escalated or validated; the others are summarised (count per product and status).
CARRIED_STATUSES = ("escalated", "validated")
NO_LOT_ACTION = "Evaluate the product-level signal; no batch-level test singles out a lot."

# the only fields of each kind that may appear in an alert
SIGNAL_FIELDS = (
    "signal_id",
    "level",
    "product_id",
    "product_name",
    "ingredient",
    "pt",
    "batch_id",
    "status",
    "methods",
    "first_detected",
    "last_detected",
)
BATCH_FIELDS = (
    "batch_id",
    "lot_number",
    "product_id",
    "site",
    "manufactured_on",
    "expiry_on",
    "released_on",
    "units_released",
    "recall_status",
    "implicated_by",
    "units_delivered",
    "regions",
    "pharmacies_reached",
    "first_delivery",
    "last_delivery",
    "linked_cases",
    "link_methods",
    "cases_per_10k_packs",
)
CASE_FIELDS = (
    "case_ref",
    "received_on",
    "onset_date",
    "age_band",
    "sex",
    "serious",
    "seriousness",
    "outcome",
    "source",
    "batch_id",
    "link_method",
)
PHARMACY_FIELDS = ("region", "pharmacy_id", "units", "first_delivery", "last_delivery")
CONSIGNMENT_FIELDS = (
    "consignment_id",
    "region",
    "from_location",
    "to_location",
    "quantity",
    "shipped_at",
    "received_at",
)
EXCURSION_FIELDS = (
    "event_id",
    "event_time",
    "biz_step",
    "consignment_id",
    "region",
    "min_temp_c",
    "max_temp_c",
    "storage_min_c",
    "storage_max_c",
)


@dataclass(frozen=True)
class Alert:
    alert_id: str
    manufacturer_id: str
    content: dict
    content_hash: str
    state: dict = field(default_factory=dict)
    supersedes: str | None = None

    @property
    def signal_ids(self) -> list[str]:
        return [s["signal_id"] for s in self.state["signals"]]

    @property
    def batch_ids(self) -> list[str]:
        return sorted({b for s in self.state["signals"] for b in s["batches"]})


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()


def alert_state(manufacturer_id: str, signals: list[dict]) -> dict:
    """What identifies an alert: per signal its id, status and implicated batch ids."""
    return {
        "manufacturer_id": manufacturer_id,
        "signals": sorted(
            (
                {
                    "signal_id": s["signal_id"],
                    "status": s["status"],
                    "batches": sorted(b["batch_id"] for b in s["batches"]),
                }
                for s in signals
            ),
            key=lambda s: s["signal_id"],
        ),
    }


def state_changes(previous: dict | None, current: dict) -> dict | None:
    """What changed since the previous alert's state (None for a first alert)."""
    if previous is None:
        return None
    before = {s["signal_id"]: s for s in previous.get("signals", [])}
    after = {s["signal_id"]: s for s in current["signals"]}
    changed = []
    for sid in sorted(set(before) & set(after)):
        b, a = before[sid], after[sid]
        if b != a:
            changed.append(
                {
                    "signal_id": sid,
                    "status": [b["status"], a["status"]],
                    "batches_added": sorted(set(a["batches"]) - set(b["batches"])),
                    "batches_removed": sorted(set(b["batches"]) - set(a["batches"])),
                }
            )
    return {
        "new_signals": sorted(set(after) - set(before)),
        "changed_signals": changed,
        "signals_no_longer_reported": sorted(set(before) - set(after)),
    }


def standing_out(signals: pl.DataFrame) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(product_id, PT) → {batch_id: methods} of the batch-level signals that single a lot out for that event
    (not refuted or closed): the only evidence that lets an action name a lot."""
    out: dict[tuple[str, str], dict[str, list[str]]] = {}
    if signals.height == 0 or "level" not in signals.columns:
        return out
    rows = signals.filter((pl.col("level") == "batch") & ~pl.col("status").is_in(DISMISSED_STATUSES))
    for r in rows.select("product_id", "pt", "batch_id", "methods").to_dicts():
        out.setdefault((r["product_id"], r["pt"]), {})[r["batch_id"]] = sorted(r["methods"] or [])
    return out


def _excursion_text(b: dict) -> str:
    where = f" in consignment(s) {', '.join(b['excursion_consignments'])}" if b.get("excursion_consignments") else ""
    return f"{b['cold_chain_excursions']} cold-chain excursion(s){where} (max {b.get('max_temp_c')} °C)"


def recommended_actions(
    batches: list[dict], level: str = "product", tested: dict[str, list[str]] | None = None
) -> list[str]:
    """What the manufacturer should do, from the batch evidence.

    A lot is named only when a batch-level test singles it out for the signal's event: the signal's own batch
    (``implicated_by`` has ``batch_signal``) or a batch in ``tested`` (batch id → the batch-level methods that
    flagged it for the same product and PT, from :func:`standing_out`). Cold-chain excursions of a named lot
    are part of its action; excursions of other implicated lots are counted without naming them (they are in
    the batch traceability). Without a named lot the action is to evaluate the signal (:data:`NO_LOT_ACTION`).
    """
    tested = tested or {}
    actions, named = [], set()
    for b in batches:
        own = "batch_signal" in (b.get("implicated_by") or [])
        methods = tested.get(b.get("batch_id"))
        if not (own or methods):
            continue
        named.add(b.get("batch_id"))
        why = (
            "it has a batch-level signal of its own"
            if own
            else f"a batch-level test ({', '.join(methods)}) singles it out for this event"
        )
        actions.append(
            f"Investigate lot {b['lot_number']}: {why}. Quarantine remaining stock pending the investigation and "
            f"consider a recall if a quality defect is confirmed."
        )
        if b.get("cold_chain_excursions"):
            actions.append(
                f"Quarantine remaining stock of lot {b['lot_number']} and investigate its {_excursion_text(b)} "
                f"before further release."
            )
    others = [b for b in batches if b.get("cold_chain_excursions") and b.get("batch_id") not in named]
    if others:
        actions.append(
            f"{len(others)} other implicated lot(s) had cold-chain excursions (see the batch traceability); no "
            f"batch-level test singles them out for this event."
        )
    if not named:
        actions.append(NO_LOT_ACTION)
    return actions


def carried_signal_ids(signals: pl.DataFrame, priority_threshold: float | None) -> set[str]:
    """The signals an alert carries in full: every one when ``priority_threshold`` is None or the register has no
    score yet; otherwise those at or above the threshold, those without a score, and those an analyst escalated
    or validated (:data:`CARRIED_STATUSES`)."""
    ids = set(signals["signal_id"].to_list()) if signals.height else set()
    if priority_threshold is None or "priority" not in signals.columns:
        return ids
    keep = signals.filter(
        pl.col("priority").is_null()
        | (pl.col("priority") >= priority_threshold)
        | pl.col("status").is_in(CARRIED_STATUSES)
    )
    return set(keep["signal_id"].to_list())


def _summary_of_rest(rest: pl.DataFrame, priority_threshold: float | None) -> dict | None:
    if priority_threshold is None:
        return None
    counts = (
        rest.group_by("product_id", "product_name", "status")
        .agg(pl.len().alias("signals"))
        .sort("product_id", "status")
        .to_dicts()
        if rest.height
        else []
    )
    return {"priority_threshold": priority_threshold, "count": rest.height, "by_product_status": counts}


def _pick(row: dict, fields: tuple[str, ...]) -> dict:
    return {f: row.get(f) for f in fields if f in row}


def _rows(frame: pl.DataFrame | None, fields: tuple[str, ...]) -> list[dict]:
    if frame is None or frame.height == 0:
        return []
    return [_pick(r, fields) for r in frame.to_dicts()]


def build_alert(
    manufacturer: dict,
    signals: pl.DataFrame,
    batches: pl.DataFrame,
    cases: pl.DataFrame,
    data_lock_point,
    *,
    pharmacies: pl.DataFrame | None = None,
    consignments: pl.DataFrame | None = None,
    excursions: pl.DataFrame | None = None,
    supersedes: str | None = None,
    previous_state: dict | None = None,
    priority_threshold: float | None = None,
) -> Alert:
    """Assemble one manufacturer's alert from frames already scoped to its products (checked here).

    With a ``priority_threshold`` the alert carries in full only :func:`carried_signal_ids` (with their batches,
    cases and the traceability of their lots) and summarises the rest in ``other_signals`` (count per product
    and status); the summary is a snapshot, not part of the alert's identity. Every signal of ``signals`` still
    counts as batch-test evidence for naming a lot (:func:`standing_out`)."""
    mid = manufacturer["manufacturer_id"]
    foreign = signals.filter(pl.col("manufacturer_id") != mid)
    if foreign.height:
        raise ValueError(f"alert for {mid} was handed signals of other manufacturers: {foreign['signal_id'].to_list()}")
    if signals.filter(pl.col("product_id").is_null()).height:
        raise ValueError(f"alert for {mid} was handed signals without a product (ingredient level pools companies)")
    own_products = set(signals["product_id"].to_list())
    if batches.height and not set(batches["product_id"].to_list()) <= own_products:
        raise ValueError(f"alert for {mid} was handed batches of products it does not own")
    own_batches = set(batches["batch_id"].to_list()) if batches.height else set()
    for name, frame in (
        ("cases", cases),
        ("pharmacies", pharmacies),
        ("consignments", consignments),
        ("excursions", excursions),
    ):
        if frame is not None and frame.height and "batch_id" in frame.columns:
            stray = set(frame["batch_id"].drop_nulls().to_list()) - own_batches
            if stray:
                raise ValueError(f"alert for {mid} was handed {name} of batches it does not own: {sorted(stray)}")
    if "batch_id" in signals.columns:
        stray = set(signals["batch_id"].drop_nulls().to_list()) - own_batches
        if stray:
            raise ValueError(f"alert for {mid} was handed batch signals of batches it does not own: {sorted(stray)}")

    excursions_by_batch: dict[str, list[dict]] = {}
    for r in _rows(excursions, ("batch_id", *EXCURSION_FIELDS)):
        excursions_by_batch.setdefault(r.pop("batch_id"), []).append(r)
    tested = standing_out(signals)
    carried = carried_signal_ids(signals, priority_threshold)
    rest = signals.filter(~pl.col("signal_id").is_in(sorted(carried)))
    lots = {}
    items = []
    for s in signals.filter(pl.col("signal_id").is_in(sorted(carried))).sort("signal_id").to_dicts():
        sig_batches = []
        for b in _rows(batches.filter(pl.col("signal_id") == s["signal_id"]), BATCH_FIELDS):
            xs = excursions_by_batch.get(b["batch_id"], [])
            if excursions is not None:
                b["cold_chain_excursions"] = len(xs)
                b["max_temp_c"] = max((x["max_temp_c"] for x in xs if x["max_temp_c"] is not None), default=None)
                b["excursion_consignments"] = sorted({x["consignment_id"] for x in xs if x.get("consignment_id")})
            else:  # figures handed in directly (no excursion detail)
                src = batches.filter((pl.col("signal_id") == s["signal_id"]) & (pl.col("batch_id") == b["batch_id"]))
                for col in ("cold_chain_excursions", "max_temp_c"):
                    if col in src.columns:
                        b[col] = src[col][0]
            sig_batches.append(b)
            lots[b["batch_id"]] = b["lot_number"]
        sig_cases = _rows(cases.filter(pl.col("signal_id") == s["signal_id"]), CASE_FIELDS)
        for c in sig_cases:
            c["lot_number"] = lots.get(c.get("batch_id"))
        item = _pick(s, SIGNAL_FIELDS)
        item["methods"] = list(s["methods"] or [])
        item["figures"] = json.loads(s["figures"]) if s.get("figures") else {}
        item.update(
            batches=sig_batches,
            cases=sig_cases,
            recommended_actions=recommended_actions(
                sig_batches, s.get("level", "product"), tested.get((s["product_id"], s["pt"]))
            ),
        )
        if s.get("priority") is not None:
            item["priority"] = s["priority"]
        items.append(item)

    # most actionable first: batch-level signals, then signals where a lot is named, then by priority and id
    items.sort(
        key=lambda i: (
            i.get("level") != "batch",
            NO_LOT_ACTION in i["recommended_actions"],
            -(i.get("priority") or 0.0),
            i["signal_id"],
        )
    )
    traceability = {}
    for bid in sorted({b["batch_id"] for i in items for b in i["batches"]}):
        traceability[bid] = {
            "lot_number": lots.get(bid),
            "pharmacies": _rows(pharmacies.filter(pl.col("batch_id") == bid), PHARMACY_FIELDS)
            if pharmacies is not None
            else [],
            "consignments": _rows(consignments.filter(pl.col("batch_id") == bid), CONSIGNMENT_FIELDS)
            if consignments is not None
            else [],
            "excursions": excursions_by_batch.get(bid, []),
        }
    state = alert_state(mid, items)
    content = {
        "manufacturer": {"manufacturer_id": mid, "name": manufacturer["name"]},
        "data_lock_point": data_lock_point,
        "changes": state_changes(previous_state, state),
        "signals": items,
        "batch_traceability": traceability,
    }
    if (summary := _summary_of_rest(rest, priority_threshold)) is not None:
        content["other_signals"] = summary
    content_hash = hashlib.sha256(_canonical(state)).hexdigest()
    alert_id = f"ALR-{mid}-" + hashlib.sha256(f"{content_hash}|{supersedes or ''}".encode()).hexdigest()[:12]
    return Alert(
        alert_id=alert_id,
        manufacturer_id=mid,
        content=content,
        content_hash=content_hash,
        state=state,
        supersedes=supersedes,
    )


NOTICE = (
    "This alert concerns only your own products. Case summaries are de-identified (no patient identifiers; "
    "case references are specific to your company). A signal is not proof of causation."
)


def alert_document(alert: Alert, generated_at: str) -> dict:
    """The alert as delivered on every channel (the JSON file, the webhook body, the e-mail attachment)."""
    return {
        "alert_id": alert.alert_id,
        "kind": "update" if alert.supersedes else "new",
        "supersedes": alert.supersedes,
        "generated_at": generated_at,
        "content_hash": alert.content_hash,
        "notice": NOTICE,
        **alert.content,
    }


def document_text(document: dict) -> str:
    """The exact serialisation stored in the outbox and sent; re-sends are byte-identical."""
    return json.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))


def render_alert_html(document: dict) -> str:
    return render("alert.html.j2", a=document)


def render_alert_text(document: dict) -> str:
    return render("alert.txt.j2", a=document)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_alert(document_json: str, folder: Path) -> tuple[Path, Path]:
    """Write ``<alert_id>.json`` (the exact document) and ``.html`` under the manufacturer's folder.

    Writes are atomic (temp file + rename), so a crash leaves either the old file or the new one,
    and writing the same alert twice gives the same files.
    """
    document = json.loads(document_json)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{document['alert_id']}.json"
    html_path = folder / f"{document['alert_id']}.html"
    _atomic_write(html_path, render_alert_html(document))
    _atomic_write(json_path, document_json)
    return json_path, html_path
