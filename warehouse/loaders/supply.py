"""Supply-chain events (inbox/supply/*.jsonld, EPCIS 2.0 JSON-LD) → supply_event.

Events are read at lot level: each ``quantityList``/``epcList`` entry whose class or instance
identifier names a GTIN + lot (GS1 Digital Link) or an NMPA drug code + lot (our URN) becomes
one row, joined to its batch. Temperature readings (``sensorElementList``, type
``gs1:Temperature``, uom ``CEL``) are summarised as min/max per event; the excursion view
compares them with the product's labelled storage range. An event that names no known batch
or lacks its time is quarantined with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl

from warehouse.inbox import inbox_files, quarantine_frame, record_ingested, replace_quarantine, replace_rows

_DL_LOT = re.compile(r"/01/(?P<gtin>\d{14})/10/(?P<lot>[^/?#]+)")
_DL_SERIAL = re.compile(r"/01/(?P<gtin>\d{14})/21/(?P<serial>[^/?#]+)")
_NMPA_LOT = re.compile(r"^urn:pvtrace:nmpa:(?P<nmpa>\d{7}):lot:(?P<lot>.+)$")
_BIZSTEP = re.compile(r"(?:^|[:/])([a-z_]+)$")


def _vocab(value: str | None) -> str | None:
    """CBV values arrive bare (``shipping``), prefixed (``cbv:BizStep-shipping``) or as URIs."""
    if not value:
        return None
    tail = value.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.split("-", 1)[-1] if "-" in tail else tail


def _identifier(epc: str) -> dict:
    from urllib.parse import unquote

    if m := _DL_LOT.search(epc):
        return {"gtin": m["gtin"], "lot_number": unquote(m["lot"]), "nmpa_drug_code": None}
    if m := _NMPA_LOT.match(epc):
        return {"gtin": None, "lot_number": m["lot"], "nmpa_drug_code": m["nmpa"]}
    return {}


def _temperatures(event: dict) -> tuple[float | None, float | None]:
    values = []
    for element in event.get("sensorElementList") or []:
        for report in element.get("sensorReport") or []:
            kind = str(report.get("type", ""))
            if kind.endswith("Temperature") and report.get("uom", "CEL") == "CEL":
                for field in ("value", "minValue", "maxValue"):
                    if isinstance(report.get(field), (int, float)):
                        values.append(float(report[field]))
    return (min(values), max(values)) if values else (None, None)


def _location(value) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def flatten_epcis_document(doc: dict, source_file: str) -> tuple[list[dict], list[dict]]:
    """One EPCIS document → (event rows, rejected rows)."""
    rows, rejected = [], []
    body = doc.get("epcisBody") or {}
    events = body.get("eventList") or ([body["event"]] if "event" in body else [])
    for i, ev in enumerate(events):
        event_id = ev.get("eventID") or f"{source_file}#{i}"
        if not ev.get("eventTime"):
            rejected.append({"source_file": source_file, "record_key": event_id, "reason": "missing_field",
                             "detail": "eventTime is required"})
            continue
        tmin, tmax = _temperatures(ev)
        src = {s.get("type", "").rsplit("-", 1)[-1]: s.get("source") for s in ev.get("sourceList") or []}
        dst = {s.get("type", "").rsplit("-", 1)[-1]: s.get("destination") for s in ev.get("destinationList") or []}
        items = [(q.get("epcClass", ""), q.get("quantity")) for q in ev.get("quantityList") or []]
        items += [(q.get("epcClass", ""), q.get("quantity")) for q in ev.get("childQuantityList") or []]
        items += [(e, 1.0) for e in ev.get("epcList") or []]
        identified = [(epc, qty, _identifier(epc)) for epc, qty in items]
        identified = [x for x in identified if x[2]]
        if not identified:
            rejected.append({"source_file": source_file, "record_key": event_id, "reason": "no_lot_identifier",
                             "detail": f"{ev.get('type')} names no GTIN+lot or NMPA lot class"})
            continue
        for n, (epc, qty, ident) in enumerate(identified):
            rows.append({
                "event_id": event_id if len(identified) == 1 else f"{event_id}#{n}",
                "event_type": ev.get("type"), "action": ev.get("action"),
                "biz_step": _vocab(ev.get("bizStep")), "disposition": _vocab(ev.get("disposition")),
                "event_time": ev["eventTime"], "read_point": _location(ev.get("readPoint")),
                "biz_location": _location(ev.get("bizLocation")),
                "source_location": src.get("location") or next(iter(src.values()), None),
                "destination_location": dst.get("location") or next(iter(dst.values()), None),
                "epc_class": epc, "quantity": None if qty is None else float(qty),
                "consignment_id": ev.get("pvtrace:consignmentId"), "region": ev.get("pvtrace:region"),
                "min_temp_c": tmin, "max_temp_c": tmax, "source_file": source_file, **ident,
            })
    return rows, rejected


_SCHEMA = {
    "event_id": pl.String, "event_type": pl.String, "action": pl.String, "biz_step": pl.String,
    "disposition": pl.String, "event_time": pl.String, "read_point": pl.String, "biz_location": pl.String,
    "source_location": pl.String, "destination_location": pl.String, "epc_class": pl.String, "gtin": pl.String,
    "nmpa_drug_code": pl.String, "lot_number": pl.String, "quantity": pl.Float64, "consignment_id": pl.String,
    "region": pl.String, "min_temp_c": pl.Float64, "max_temp_c": pl.Float64, "source_file": pl.String,
}


def load_supply_events(con: duckdb.DuckDBPyConnection, inbox: Path) -> dict[str, int]:
    files = inbox_files(inbox, "supply", required=False)
    rows, rejected = [], []
    for f in files:
        try:
            doc = json.loads(f.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            rejected.append({"source_file": str(f.path), "record_key": None, "reason": "bad_json", "detail": str(exc)})
            continue
        if doc.get("type") != "EPCISDocument":
            rejected.append({"source_file": str(f.path), "record_key": None, "reason": "not_epcis",
                             "detail": f"type={doc.get('type')!r}, expected EPCISDocument"})
            continue
        r, q = flatten_epcis_document(doc, str(f.path))
        rows.extend(r)
        rejected.extend(q)
    events = pl.DataFrame(rows, schema=_SCHEMA).unique(subset=["event_id"], keep="last", maintain_order=True)
    events = events.with_columns(pl.col("event_time").str.to_datetime(time_zone="UTC", strict=False))
    batches = con.sql(
        "SELECT b.batch_id, b.lot_number, p.gtin, p.nmpa_drug_code FROM batch b JOIN product p USING (product_id)"
    ).pl()
    gs1 = events.filter(pl.col("gtin").is_not_null()).join(
        batches.select("batch_id", "lot_number", "gtin"), on=["gtin", "lot_number"], how="left")
    nmpa = events.filter(pl.col("gtin").is_null()).join(
        batches.select("batch_id", "lot_number", "nmpa_drug_code"), on=["nmpa_drug_code", "lot_number"], how="left")
    events = pl.concat([gs1, nmpa], how="diagonal_relaxed")
    bad = events.filter(pl.col("batch_id").is_null() | pl.col("event_time").is_null())
    rejected_frame = pl.concat([
        quarantine_frame(rejected),
        quarantine_frame(bad.select(
            "source_file", pl.col("event_id").alias("record_key"),
            pl.when(pl.col("event_time").is_null()).then(pl.lit("bad_timestamp")).otherwise(pl.lit("unknown_batch")).alias("reason"),
            pl.format("{} lot {}", pl.coalesce("gtin", "nmpa_drug_code"), pl.col("lot_number")).alias("detail"),
        )),
    ])
    good = events.filter(pl.col("batch_id").is_not_null() & pl.col("event_time").is_not_null())
    counts = {"supply_events": replace_rows(con, "supply_event", good),
              "quarantined": replace_quarantine(con, "supply", rejected_frame)}
    record_ingested(con, files)
    return counts


COLD_CHAIN_EXCURSIONS_SQL = """
    SELECT s.batch_id, b.product_id, s.event_id, s.event_time, s.biz_step, s.consignment_id, s.region,
           s.min_temp_c, s.max_temp_c, p.storage_min_c, p.storage_max_c
    FROM supply_event s
    JOIN batch b USING (batch_id)
    JOIN product p ON p.product_id = b.product_id
    WHERE (s.max_temp_c > p.storage_max_c) OR (s.min_temp_c < p.storage_min_c)
"""
