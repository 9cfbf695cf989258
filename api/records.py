"""What the ``trace`` and ``safety`` scopes add to a verified pack, and the EPCIS 2.0 export of a batch.

Nothing here reads a patient key, a case or a narrative: the journey's dispensing step is the
pharmacy, its region and the time; safety lists signals and alerts (their ids, terms, statuses and
dates), never the cases behind them.

Jurisdiction rules (``safety``). A client belongs to one market region — CN, EU, US or JP, the
``product.region`` vocabulary and :data:`reports.jurisdictions.JURISDICTIONS`' ``market_region``.
Only signals still open (status not ``refuted`` or ``closed``) are shown, and of those:

* product-level signals of the pack's product: if the product is authorised in the client's region
  (``product.region``);
* ingredient-level signals of its ingredient: if some product of that ingredient is authorised there;
* batch-level signals of the pack's batch: if the product is authorised there, or the batch reached
  the region — delivered to a pharmacy in one of its countries (``delivery.country``) or shipped to
  a distribution centre there (``supply_event.region``, an ISO 3166-2 subdivision whose first two
  letters are the country);
* manufacturer alerts naming the batch: under the batch rule, listing only the visible signals.

Everything else is withheld, and the answer says how many signals were withheld (not which).
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb

from reports.jurisdictions import JURISDICTIONS

__all__ = ["batch_epcis_document", "jurisdiction_countries", "pack_safety", "pack_trace"]

OPEN_EXCLUDED = ("refuted", "closed")


def jurisdiction_countries(region: str) -> tuple[str, ...]:
    """ISO countries of a market region (CN, EU, US, JP), from the reporting jurisdictions."""
    for j in JURISDICTIONS.values():
        if j.market_region == region:
            return j.countries
    raise ValueError(f"unknown jurisdiction {region!r}")


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _iso(value):
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
            return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# ---- trace --------------------------------------------------------------------------------
_EVENTS_SQL = """
SELECT epcis_event_id AS event_id, event_time, event_type, biz_step, disposition,
       coalesce(biz_location, read_point) AS location, source_location, destination_location,
       consignment_id, region, sum(quantity) AS quantity, min(min_temp_c) AS min_temp_c, max(max_temp_c) AS max_temp_c
FROM supply_event WHERE batch_id = $batch_id
GROUP BY ALL ORDER BY event_time, event_id
"""


def pack_trace(con: duckdb.DuckDBPyConnection, pack: dict) -> dict:
    """The pack's journey (commissioning → shipping → receiving → dispensing) and its cold-chain summary.

    Supply events are recorded per lot, not per pack: the journey lists the batch's commissioning and,
    of its consignments, those to the region where the pack was dispensed (``route_basis``
    ``dispensing_region``) — or every consignment when the pack was not dispensed or no consignment
    went to that region (``all_consignments``).
    """
    batch_id = pack.get("batch_id")
    if not batch_id:
        return {"journey": [], "route_basis": None, "cold_chain": None}
    disp = (
        con.execute(
            "SELECT dispensed_at, dispensed_pharmacy, dispensed_region, dispensed_country FROM api_pack_state "
            "WHERE pack_key = $key",
            {"key": _pack_key(pack)},
        ).fetchone()
        if pack.get("level") == "pack"
        else None
    )
    events = _dicts(con.execute(_EVENTS_SQL, {"batch_id": batch_id}))
    region = disp[2] if disp and disp[0] is not None else None
    moving = [e for e in events if e["consignment_id"] is not None]
    on_route = [e for e in moving if region is not None and e["region"] == region]
    basis = "dispensing_region" if on_route else "all_consignments"
    chosen = {e["event_id"] for e in (on_route or moving)}
    journey = [
        {
            "step": e["biz_step"],
            "time": _iso(e["event_time"]),
            "event_type": e["event_type"],
            "disposition": e["disposition"],
            "location": e["location"],
            "source": e["source_location"],
            "destination": e["destination_location"],
            "region": e["region"],
            "consignment_id": e["consignment_id"],
            "quantity": e["quantity"],
            "min_temp_c": e["min_temp_c"],
            "max_temp_c": e["max_temp_c"],
            "event_id": e["event_id"],
        }
        for e in events
        if e["consignment_id"] is None or e["event_id"] in chosen
    ]
    if disp and disp[0] is not None:
        journey.append(
            {
                "step": "dispensing",
                "time": _iso(disp[0]),
                "pharmacy_id": disp[1],
                "region": disp[2],
                "country": disp[3],
            }
        )
    storage = con.execute(
        "SELECT p.storage_min_c, p.storage_max_c FROM batch b JOIN product p USING (product_id) WHERE b.batch_id = $b",
        {"b": batch_id},
    ).fetchone()
    excursions = _dicts(
        con.execute(
            "SELECT event_id, event_time, biz_step, consignment_id, region, min_temp_c, max_temp_c, "
            "readings_out_of_range, duration_minutes FROM cold_chain_excursion WHERE batch_id = $b "
            "ORDER BY event_time, event_id",
            {"b": batch_id},
        )
    )
    on_route_ex = [x for x in excursions if x["event_id"] in chosen]
    readings = [e for e in journey if e.get("max_temp_c") is not None]
    cold_chain = {
        "storage_min_c": storage[0] if storage else None,
        "storage_max_c": storage[1] if storage else None,
        "monitored_events_on_route": len(readings),
        "min_temp_c_on_route": min((e["min_temp_c"] for e in readings if e["min_temp_c"] is not None), default=None),
        "max_temp_c_on_route": max((e["max_temp_c"] for e in readings), default=None),
        "excursions_on_route": len(on_route_ex),
        "excursions_in_batch": len(excursions),
        "excursions": [{**{k: _iso(v) for k, v in x.items()}, "on_route": x["event_id"] in chosen} for x in excursions],
    }
    return {"journey": journey, "route_basis": basis, "cold_chain": cold_chain}


def _pack_key(pack: dict) -> str | None:
    if pack.get("system") == "gs1" and pack.get("serial"):
        return f"gs1|{pack['gtin']}|{pack['serial']}"
    if pack.get("system") == "nmpa":
        return f"nmpa|{pack['nmpa_drug_code']}{pack['serial']}"
    return None


# ---- safety ------------------------------------------------------------------------------
_REACH_SQL = """
SELECT
  (SELECT region = $region FROM product WHERE product_id = $product_id) AS product_authorised,
  (SELECT count(*) > 0 FROM product WHERE region = $region
     AND ingredient = (SELECT ingredient FROM product WHERE product_id = $product_id)) AS ingredient_authorised,
  (SELECT count(*) > 0 FROM delivery WHERE batch_id = $batch_id AND country IN (SELECT unnest($countries)))
  OR (SELECT count(*) > 0 FROM supply_event WHERE batch_id = $batch_id
      AND substr(region, 1, 2) IN (SELECT unnest($countries))) AS batch_reached
"""
_SIGNALS_SQL = """
SELECT signal_id, level, product_id, ingredient, pt, batch_id, methods, status, first_detected, last_detected
FROM signal
WHERE status NOT IN ('refuted', 'closed')
  AND ((level = 'batch' AND batch_id = $batch_id)
       OR (level = 'product' AND product_id = $product_id)
       OR (level = 'ingredient' AND ingredient = (SELECT ingredient FROM product WHERE product_id = $product_id)))
ORDER BY level, pt, signal_id
"""


def pack_safety(con: duckdb.DuckDBPyConnection, pack: dict, jurisdiction: str) -> dict:
    """Open signals and manufacturer alerts on the pack's batch, product and ingredient that
    ``jurisdiction`` may see (module docstring)."""
    countries = list(jurisdiction_countries(jurisdiction))
    product_id, batch_id = pack.get("product_id"), pack.get("batch_id")
    out = {"jurisdiction": jurisdiction, "signals": [], "alerts": [], "withheld_signals": 0, "recall_status": None}
    if not product_id:
        return out
    params = {"product_id": product_id, "batch_id": batch_id, "countries": countries, "region": jurisdiction}
    product_ok, ingredient_ok, reached = con.execute(_REACH_SQL, params).fetchone()
    batch_ok = bool(product_ok) or (bool(reached) and batch_id is not None)
    may_see = {"batch": batch_ok, "product": bool(product_ok), "ingredient": bool(ingredient_ok)}
    rows = _dicts(con.execute(_SIGNALS_SQL, {"product_id": product_id, "batch_id": batch_id}))
    visible = [r for r in rows if may_see.get(r["level"], False)]
    out["withheld_signals"] = len(rows) - len(visible)
    out["signals"] = [{k: _iso(v) for k, v in r.items()} for r in visible]
    if batch_id:
        out["recall_status"] = con.execute(
            "SELECT coalesce(recall_status, 'none') FROM batch WHERE batch_id = $b", {"b": batch_id}
        ).fetchone()[0]
    if batch_id and batch_ok:
        ids = {r["signal_id"] for r in visible}
        alerts = _dicts(
            con.execute(
                "SELECT alert_id, created_at, signal_ids, supersedes FROM alert "
                "WHERE list_contains(batch_ids, $b) ORDER BY created_at, alert_id",
                {"b": batch_id},
            )
        )
        out["alerts"] = [
            {
                "alert_id": a["alert_id"],
                "created_at": _iso(a["created_at"]),
                "supersedes": a["supersedes"],
                "signal_ids": [s for s in a["signal_ids"] if s in ids],
            }
            for a in alerts
        ]
    return out


# ---- EPCIS 2.0 export ----------------------------------------------------------------------------
EPCIS_CONTEXT = [
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    {"pvtrace": "https://pvtrace.example/voc/"},
]
_CBV = "https://ref.gs1.org/cbv/"
_LISTS = {  # role -> (event type's list, quantity list)
    "object": ("epcList", "quantityList"),
    "child": ("childEPCs", "childQuantityList"),
    "input": ("inputEPCList", "inputQuantityList"),
    "output": ("outputEPCList", "outputQuantityList"),
}


def _lot_class(gtin: str | None, nmpa: str | None, lot: str) -> str:
    """The lot class id the platform exchanges: GS1 Digital Link for GTIN products, a URN for NMPA-only ones."""
    from urllib.parse import quote

    if gtin:
        return f"https://id.gs1.org/01/{gtin}/10/{quote(lot, safe='')}"
    return f"urn:pvtrace:nmpa:{nmpa}:lot:{quote(lot, safe='')}"


def _vocab(value: str | None, kind: str) -> str | None:
    """A CBV value as its GS1 Web URI (``https://ref.gs1.org/cbv/BizStep-shipping``).

    The supply loader keeps the bare word whatever form it arrived in; the URI form is valid EPCIS
    2.0 for standard and non-standard words alike (a bare word must be a CBV word)."""
    if value is None:
        return None
    return value if ":" in value else f"{_CBV}{kind}-{value}"


def batch_epcis_document(con: duckdb.DuckDBPyConnection, batch_id: str, *, created: dt.datetime) -> dict | None:
    """The batch's supply events as an EPCIS 2.0 JSON-LD document; None for an unknown batch.

    One event per EPCIS ``eventID``, with the batch's part of it: its lot class and quantity in the
    list of the row's role (instance-level items are stored counted, so they are exported as a
    quantity of the lot class), times in UTC, locations and consignment as loaded, min/max
    temperatures as one sensor report. A TransactionEvent is exported as an ObjectEvent
    (``pvtrace:loadedAs``): its business transactions are not stored, and EPCIS requires them.
    """
    head = con.execute(
        "SELECT b.lot_number, p.gtin, p.nmpa_drug_code FROM batch b JOIN product p USING (product_id) "
        "WHERE b.batch_id = $b",
        {"b": batch_id},
    ).fetchone()
    if head is None:
        return None
    lot, gtin, nmpa = head
    lot_class = _lot_class(gtin, nmpa, lot)
    rows = _dicts(
        con.execute(
            "SELECT * FROM supply_event WHERE batch_id = $b ORDER BY event_time, epcis_event_id, event_id",
            {"b": batch_id},
        )
    )
    events: dict[str, dict] = {}
    for r in rows:
        eid = r["epcis_event_id"] or r["event_id"]
        ev = events.get(eid)
        if ev is None:
            kind = r["event_type"] if r["event_type"] != "TransactionEvent" else "ObjectEvent"
            ev = {"type": kind}
            at = r["event_time"].astimezone(dt.UTC)
            ev["eventTime"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
            ev["eventTimeZoneOffset"] = "+00:00"
            if eid.startswith(("ni:", "urn:", "http")):
                ev["eventID"] = eid
            if kind != "TransformationEvent":
                ev["action"] = r["action"] or "OBSERVE"
            if r["parent_id"] and kind in ("AggregationEvent", "AssociationEvent"):
                ev["parentID"] = r["parent_id"]
            for field, value in (("bizStep", r["biz_step"]), ("disposition", r["disposition"])):
                v = _vocab(value, "BizStep" if field == "bizStep" else "Disp")
                if v:
                    ev[field] = v
            if r["read_point"]:
                ev["readPoint"] = {"id": r["read_point"]}
            if r["biz_location"]:
                ev["bizLocation"] = {"id": r["biz_location"]}
            if r["source_location"]:
                ev["sourceList"] = [{"type": "location", "source": r["source_location"]}]
            if r["destination_location"]:
                ev["destinationList"] = [{"type": "location", "destination": r["destination_location"]}]
            if r["min_temp_c"] is not None or r["max_temp_c"] is not None:
                report = {"type": "gs1:Temperature", "uom": "CEL"}
                if r["min_temp_c"] is not None:
                    report["minValue"] = r["min_temp_c"]
                if r["max_temp_c"] is not None:
                    report["maxValue"] = r["max_temp_c"]
                ev["sensorElementList"] = [{"sensorReport": [report]}]
            if r["consignment_id"]:
                ev["pvtrace:consignmentId"] = r["consignment_id"]
            if r["region"]:
                ev["pvtrace:region"] = r["region"]
            if r["event_type"] == "TransactionEvent":
                ev["pvtrace:loadedAs"] = "TransactionEvent"
            events[eid] = ev
        role = r["role"] or "object"
        if role == "parent":
            continue
        _, qty_list = _LISTS.get(role, _LISTS["object"])
        if ev["type"] == "ObjectEvent":
            qty_list = "quantityList"
        quantity = r["quantity"] if r["quantity"] is not None else r["epc_count"]
        entry = {"epcClass": lot_class}
        if quantity is not None:
            entry["quantity"] = float(quantity)
        ev.setdefault(qty_list, []).append(entry)
    for ev in events.values():  # an Aggregation/Association event with only its parent row: empty child list
        if ev["type"] in ("AggregationEvent", "AssociationEvent"):
            ev.setdefault("childEPCs", [])
    stamp = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z"
    return {
        "@context": EPCIS_CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": stamp,
        "epcisBody": {"eventList": list(events.values())},
    }


def dumps(obj) -> bytes:
    """JSON of an API answer: dates as ISO 8601, UTF-8."""
    return json.dumps(obj, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_default(value):
    out = _iso(value)
    if out is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return out
