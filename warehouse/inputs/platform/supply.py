"""Supply-chain events (inbox/supply/*.jsonld, EPCIS 2.0 JSON-LD) → supply_event, cold_chain_excursion.

1. **Validation.** Every document is checked against the GS1 EPCIS 2.0 JSON Schema
   (:mod:`warehouse.inputs.platform.epcis_schema`: ``jsonschema`` with a local ``referencing``
   registry, no network, plus a compiled fast path). An error outside the event list
   quarantines the document; an error inside one event quarantines that event, with the
   validator's path and reason (``schema_invalid``); the document's other events load.
2. **Events → rows.** Each event names what it is about in role-specific lists:

   ===================  ===========================================================  ========
   event type           lists                                                        role
   ===================  ===========================================================  ========
   ObjectEvent          ``epcList``, ``quantityList``                                object
   TransactionEvent     ``epcList``, ``quantityList`` (``parentID`` kept)            object
   AggregationEvent     ``parentID`` / ``childEPCs``, ``childQuantityList``          parent / child
   AssociationEvent     ``parentID`` / ``childEPCs``, ``childQuantityList``          parent / child
   TransformationEvent  ``inputEPCList``, ``inputQuantityList`` /                    input /
                        ``outputEPCList``, ``outputQuantityList``                    output
   ===================  ===========================================================  ========

   Identifiers are read as lot classes (GS1 Digital Link ``/01/{gtin}/10/{lot}``,
   ``urn:epc:class:lgtin:…``, our ``urn:pvtrace:nmpa:{code}:lot:{lot}``) or instances
   (``/01/{gtin}/21/{serial}``, ``urn:epc:id:sgtin:…``). A lot class reaches its batch by
   product GTIN/NMPA code + lot number; an instance through the pack table (GTIN + serial),
   else through the lot in its Digital Link. One ``supply_event`` row per event × role ×
   batch: ``epc_count`` instances and ``quantity`` (instances count 1 each). ``event_id``
   stays the EPCIS ``eventID`` when an event gives one row (``{eventID}#{n}`` otherwise);
   ``epcis_event_id`` is always the EPCIS ``eventID``. Product classes (``idpat``, GTIN
   only) and logistic units (SSCC, GRAI, GIAI) name no batch: they are not rows (a parent's
   id is kept in ``parent_id``).
3. **Quarantine, never dropped:** ``bad_json``, ``not_epcis``, ``schema_invalid``,
   ``bad_timestamp``; ``unknown_batch`` (a lot class of no known batch), ``unknown_pack``
   (an instance no pack upload knows), ``no_lot_identifier`` (an event naming no lot or
   instance at all). An event with some resolved and some unknown items keeps the resolved
   rows and quarantines each unknown item.
4. **Temperatures.** Sensor reports of type Temperature (``gs1:``/URI prefixes accepted;
   ``CEL``, ``FAH`` and ``KEL`` converted to °C; ``value`` or ``minValue``/``maxValue``;
   the time from the report or its ``sensorMetadata``, ``startTime``/``endTime`` for an
   interval report) give ``min_temp_c``/``max_temp_c`` per event and, against the
   product's labelled storage range, the ``cold_chain_excursion`` table: one row per event
   × batch with any reading out of range, with the readings out of range, first/last/peak
   time and the minutes between the first and last out-of-range reading (an observed lower
   bound of the excursion; null when readings carry no time).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from urllib.parse import unquote

import duckdb
import polars as pl

from warehouse.inputs.inbox import (
    FileAccount,
    account,
    counts_by_file,
    inbox_files,
    quarantine_frame,
    record_ingested,
    replace_quarantine,
    replace_rows,
    run_clock,
    write_manifest,
)
from warehouse.inputs.platform import plausibility
from warehouse.inputs.platform.epcis_schema import SCHEMA_ENV, configured_schema, epcis_validator
from warehouse.linkage.pack_codes import gs1_check_digit

#: where the GS1 schema is read from (the inlined file; its modular sources beside it)

_DL = re.compile(
    r"^https?://[^/]+(?:/[^/]+)*?/01/(?P<gtin>\d{8,14})(?:/22/[^/?#]+)?"
    r"(?:/10/(?P<lot>[^/?#]+))?(?:/21/(?P<serial>[^/?#]+))?(?:[/?#].*)?$"
)
_SGTIN = re.compile(r"^urn:epc:id:sgtin:(?P<cp>\d+)\.(?P<ir>\d+)\.(?P<serial>.+)$")
_LGTIN = re.compile(r"^urn:epc:class:lgtin:(?P<cp>\d+)\.(?P<ir>\d+)\.(?P<lot>.+)$")
_SGTIN_PAT = re.compile(r"^urn:epc:idpat:sgtin:(?P<cp>\d+)\.(?P<ir>\d+)\.\*$")
_NMPA_LOT = re.compile(r"^urn:pvtrace:nmpa:(?P<nmpa>\d{7}):lot:(?P<lot>.+)$")

#: (list field, role) per event type; parentID is handled separately
_LISTS = {
    "ObjectEvent": [("epcList", "object"), ("quantityList", "object")],
    "TransactionEvent": [("epcList", "object"), ("quantityList", "object")],
    "AggregationEvent": [("childEPCs", "child"), ("childQuantityList", "child")],
    "AssociationEvent": [("childEPCs", "child"), ("childQuantityList", "child")],
    "TransformationEvent": [
        ("inputEPCList", "input"),
        ("inputQuantityList", "input"),
        ("outputEPCList", "output"),
        ("outputQuantityList", "output"),
    ],
}
_ROLE_ORDER = {"parent": 0, "object": 1, "child": 2, "input": 3, "output": 4}


def _vocab(value: str | None) -> str | None:
    """CBV values arrive bare (``shipping``), prefixed (``cbv:BizStep-shipping``) or as URIs."""
    if not value:
        return None
    tail = value.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.split("-", 1)[-1] if "-" in tail else tail


def _gtin14(company_prefix: str, item_ref: str) -> str:
    """EPC Tag Data Standard: GTIN-14 = indicator (first digit of the item reference) +
    company prefix + rest of the item reference + check digit."""
    body = item_ref[:1] + company_prefix + item_ref[1:]
    return body + gs1_check_digit(body)


def parse_epc(epc: str) -> dict:
    """What an EPCIS identifier names: ``kind`` lot / instance / product / other, with
    ``gtin``, ``lot_number``, ``serial``, ``nmpa_drug_code`` where it carries them."""
    out = {"kind": "other", "gtin": None, "lot_number": None, "serial": None, "nmpa_drug_code": None}
    if not isinstance(epc, str):
        return out
    if m := _DL.match(epc):
        gtin = m["gtin"].rjust(14, "0")
        lot = unquote(m["lot"]) if m["lot"] else None
        serial = unquote(m["serial"]) if m["serial"] else None
        kind = "instance" if serial else "lot" if lot else "product"
        return {**out, "kind": kind, "gtin": gtin, "lot_number": lot, "serial": serial}
    if m := _SGTIN.match(epc):
        return {**out, "kind": "instance", "gtin": _gtin14(m["cp"], m["ir"]), "serial": unquote(m["serial"])}
    if m := _LGTIN.match(epc):
        return {**out, "kind": "lot", "gtin": _gtin14(m["cp"], m["ir"]), "lot_number": unquote(m["lot"])}
    if m := _SGTIN_PAT.match(epc):
        return {**out, "kind": "product", "gtin": _gtin14(m["cp"], m["ir"])}
    if m := _NMPA_LOT.match(epc):
        return {**out, "kind": "lot", "nmpa_drug_code": m["nmpa"], "lot_number": m["lot"]}
    return out


# ---- temperatures -----------------------------------------------------------------------

_TO_CELSIUS = {"CEL": lambda v: v, "FAH": lambda v: (v - 32.0) * 5.0 / 9.0, "KEL": lambda v: v - 273.15}


def temperature_readings(event: dict) -> list[dict]:
    """Every temperature in the event's sensor reports, in °C: ``low``/``high`` (equal for a
    point reading) and ``start``/``end`` times (ISO strings, equal for a point reading; None
    when the report gives no time)."""
    readings = []
    for element in event.get("sensorElementList") or []:
        meta = element.get("sensorMetadata") or {}
        for report in element.get("sensorReport") or []:
            kind = str(report.get("type", ""))
            if kind.rsplit("/", 1)[-1].rsplit(":", 1)[-1] != "Temperature":
                continue
            convert = _TO_CELSIUS.get(report.get("uom", "CEL"))
            values = [
                float(report[f])
                for f in ("value", "minValue", "maxValue")
                if isinstance(report.get(f), (int, float)) and not isinstance(report.get(f), bool)
            ]
            if convert is None or not values:
                continue
            at = report.get("time") or meta.get("time")
            start, end = (at, at) if at else (meta.get("startTime"), meta.get("endTime"))
            readings.append(
                {
                    "low": round(convert(min(values)), 3),
                    "high": round(convert(max(values)), 3),
                    "start": start,
                    "end": end,
                }
            )
    return readings


# ---- documents → frames ------------------------------------------------------------------


def _location(value) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def _endpoint(entries, field: str) -> str | None:
    """sourceList/destinationList: the ``location`` one, else the first."""
    entries = entries or []
    by_type = {_vocab(e.get("type")): e.get(field) for e in entries if isinstance(e, dict)}
    return by_type.get("location") or next(iter(by_type.values()), None)


def event_list(doc: dict) -> list:
    """The events of an EPCISDocument (``epcisBody.eventList``) or of an EPCISQueryDocument
    (``epcisBody.queryResults.resultsBody.eventList``)."""
    body = doc.get("epcisBody") if isinstance(doc.get("epcisBody"), dict) else {}
    if doc.get("type") == "EPCISQueryDocument":
        results = (body.get("queryResults") or {}).get("resultsBody") or {}
        events = results.get("eventList") if isinstance(results, dict) else None
    else:
        events = body.get("eventList")
    return events if isinstance(events, list) else []


def _with_events(doc: dict, events: list) -> dict:
    body = dict(doc.get("epcisBody") or {})
    if doc.get("type") == "EPCISQueryDocument":
        results = dict(body.get("queryResults") or {})
        results["resultsBody"] = {**(results.get("resultsBody") or {}), "eventList": events}
        body["queryResults"] = results
    else:
        body["eventList"] = events
    return {**doc, "epcisBody": body}


def flatten_epcis_document(doc: dict, source_file: str, seq_start: int = 0) -> dict[str, list[dict]]:
    """One (already validated) EPCIS document → ``events``, ``items`` and ``readings`` rows.

    ``seq`` numbers events across documents in load order, so "the last delivery of an
    eventID wins" is well defined.
    """
    out: dict[str, list[dict]] = {"events": [], "items": [], "readings": []}
    for i, ev in enumerate(event_list(doc)):
        if not isinstance(ev, dict):
            continue
        seq = seq_start + i
        event_id = ev.get("eventID") or f"{source_file}#{i}"
        readings = temperature_readings(ev)
        kind = ev.get("type")
        parent = ev.get("parentID")
        out["events"].append(
            {
                "seq": seq,
                "epcis_event_id": event_id,
                "event_type": kind,
                "action": ev.get("action"),
                "biz_step": _vocab(ev.get("bizStep")),
                "disposition": _vocab(ev.get("disposition")),
                "event_time_text": ev.get("eventTime"),
                "read_point": _location(ev.get("readPoint")),
                "biz_location": _location(ev.get("bizLocation")),
                "source_location": _endpoint(ev.get("sourceList"), "source"),
                "destination_location": _endpoint(ev.get("destinationList"), "destination"),
                "parent_id": parent,
                "consignment_id": ev.get("pvtrace:consignmentId"),
                "region": ev.get("pvtrace:region"),
                "min_temp_c": min((r["low"] for r in readings), default=None),
                "max_temp_c": max((r["high"] for r in readings), default=None),
                "sensor_readings": len(readings) or None,
                "source_file": source_file,
            }
        )
        for r in readings:
            out["readings"].append({"seq": seq, **r})
        lists = list(_LISTS.get(kind, []))
        if parent and kind in ("AggregationEvent", "AssociationEvent", "TransactionEvent"):
            out["items"].append(
                {"seq": seq, "role": "parent", "epc": parent, "quantity": 1.0, "instance": True, **parse_epc(parent)}
            )
        for field, role in lists:
            for entry in ev.get(field) or []:
                if isinstance(entry, dict):  # quantityList element
                    epc, qty, instance = entry.get("epcClass"), entry.get("quantity"), False
                else:
                    epc, qty, instance = entry, 1.0, True
                parsed = parse_epc(epc)
                if instance and parsed["kind"] == "lot":  # an instance list naming a class: keep as class
                    instance = False
                out["items"].append(
                    {
                        "seq": seq,
                        "role": role,
                        "epc": epc,
                        "instance": instance,
                        "quantity": None if qty is None else float(qty),
                        **parsed,
                    }
                )
    return out


_EVENT_SCHEMA = {
    "seq": pl.Int64,
    "epcis_event_id": pl.String,
    "event_type": pl.String,
    "action": pl.String,
    "biz_step": pl.String,
    "disposition": pl.String,
    "event_time_text": pl.String,
    "read_point": pl.String,
    "biz_location": pl.String,
    "source_location": pl.String,
    "destination_location": pl.String,
    "parent_id": pl.String,
    "consignment_id": pl.String,
    "region": pl.String,
    "min_temp_c": pl.Float64,
    "max_temp_c": pl.Float64,
    "sensor_readings": pl.Int32,
    "source_file": pl.String,
}
_ITEM_SCHEMA = {
    "seq": pl.Int64,
    "role": pl.String,
    "epc": pl.String,
    "instance": pl.Boolean,
    "quantity": pl.Float64,
    "kind": pl.String,
    "gtin": pl.String,
    "lot_number": pl.String,
    "serial": pl.String,
    "nmpa_drug_code": pl.String,
}
_READING_SCHEMA = {"seq": pl.Int64, "low": pl.Float64, "high": pl.Float64, "start": pl.String, "end": pl.String}


def schema_path() -> Path | None:
    return configured_schema()


def _validator(validate: bool):
    """The compiled validator, or None when asked not to validate or when no GS1 schema is configured
    (``PVTRACE_EPCIS_SCHEMA`` unset; the schema is not shipped, see ``epcis_schema``): then the load goes
    on unvalidated and says so with a warning and ``documents_validated`` = 0. A schema named in
    PVTRACE_EPCIS_SCHEMA that does not exist is an error."""
    if not validate:
        return None
    path = schema_path()
    if path is None:
        warnings.warn(
            f"no EPCIS JSON Schema configured; supply documents are loaded unvalidated "
            f"(set {SCHEMA_ENV} to GS1's EPCIS-JSON-Schema.json)",
            stacklevel=3,
        )
        return None
    if not path.exists():
        raise FileNotFoundError(f"{SCHEMA_ENV}={path}: no such EPCIS JSON Schema file")
    return epcis_validator(str(path))


def read_epcis_inbox(files, *, validate: bool = True) -> tuple[dict[str, pl.DataFrame], list[dict]]:
    """Parse and validate every supply file: (events/items/readings frames, quarantine rows)."""
    validator = _validator(validate)
    parts: dict[str, list[dict]] = {"events": [], "items": [], "readings": []}
    rejected: list[dict] = []
    read: list[dict] = []  # per file: events read, or why the whole file was not read
    seq = 0
    for f in files:
        path = str(f.path if hasattr(f, "path") else f)
        info = {"source_file": path, "events": 0, "error": None}
        read.append(info)

        def whole_file(reason: str, detail: str, info=info, path=path) -> None:
            info["error"] = f"{reason}: {detail}"
            rejected.append(
                {"source_file": path, "record_key": None, "reason": reason, "detail": f"whole file: {detail}"}
            )

        data = Path(path).read_bytes()
        if not data.strip():
            whole_file("empty_file", "no document")
            continue
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            whole_file("bad_encoding", f"not UTF-8 at byte {exc.start}")
            continue
        except json.JSONDecodeError as exc:  # truncated or not JSON: the message names line and column, no content
            whole_file("bad_json", str(exc))
            continue
        except RecursionError:
            whole_file("bad_json", "nested too deeply")
            continue
        if not isinstance(doc, dict) or doc.get("type") not in ("EPCISDocument", "EPCISQueryDocument"):
            kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
            whole_file("not_epcis", f"type={kind!r}, expected EPCISDocument or EPCISQueryDocument")
            continue
        events = event_list(doc)
        bad_events: set[int] = set()
        doc_invalid = None
        for issue in validator.issues(doc) if validator else []:
            if issue.event_index is None:
                doc_invalid = issue.detail()
                break
            if issue.event_index in bad_events:
                continue  # one quarantine row per event: its first issue
            bad_events.add(issue.event_index)
            ev = events[issue.event_index]
            key = ev.get("eventID") if isinstance(ev, dict) else None
            rejected.append(
                {
                    "source_file": path,
                    "record_key": key or f"{path}#{issue.event_index}",
                    "reason": "schema_invalid",
                    "detail": issue.detail(),
                    "raw": json.dumps(ev)[:4000],
                    "_seq": seq + issue.event_index,
                }
            )
        if doc_invalid is not None:
            whole_file("schema_invalid", f"document not loaded ({len(events)} events): {doc_invalid}")
            continue
        info["events"] = len(events)
        for i, ev in enumerate(events):
            if not isinstance(ev, dict) and i not in bad_events:  # unvalidated: a non-object in the event list
                bad_events.add(i)
                rejected.append(
                    {
                        "source_file": path,
                        "record_key": f"{path}#{i}",
                        "reason": "not_an_event",
                        "detail": f"eventList[{i}] is a {type(ev).__name__}, not an event object",
                        "_seq": seq + i,
                    }
                )
        if bad_events:
            doc = _with_events(doc, [e if i not in bad_events else None for i, e in enumerate(events)])
        flat = flatten_epcis_document(doc, path, seq)
        seq += max(len(events), 1)
        for k, rows in parts.items():
            rows.extend(flat[k])
    frames = {
        "events": pl.DataFrame(parts["events"], schema=_EVENT_SCHEMA),
        "items": pl.DataFrame(parts["items"], schema=_ITEM_SCHEMA),
        "readings": pl.DataFrame(parts["readings"], schema=_READING_SCHEMA),
        "files": pl.DataFrame(read, schema={"source_file": pl.String, "events": pl.Int64, "error": pl.String}),
    }
    return frames, rejected


def _timestamp(col: str) -> pl.Expr:
    return pl.col(col).str.to_datetime(time_zone="UTC", strict=False)


def resolve_items(items: pl.DataFrame, con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Add ``batch_id`` (and ``_resolved_by``) to every item: lot class → batch, instance → pack."""
    batches = con.sql(
        "SELECT b.batch_id, b.lot_number, p.gtin, p.nmpa_drug_code FROM batch b JOIN product p USING (product_id)"
    ).pl()
    packs = con.sql("SELECT gtin, serial, batch_id AS _pack_batch FROM pack WHERE gtin IS NOT NULL").pl()
    by_gtin_lot = (
        batches.filter(pl.col("gtin").is_not_null())
        .select("gtin", "lot_number", pl.col("batch_id").alias("_gtin_lot_batch"))
        .unique(["gtin", "lot_number"])
    )
    by_nmpa_lot = (
        batches.filter(pl.col("nmpa_drug_code").is_not_null())
        .select("nmpa_drug_code", "lot_number", pl.col("batch_id").alias("_nmpa_lot_batch"))
        .unique(["nmpa_drug_code", "lot_number"])
    )
    out = (
        items.with_row_index("_item")
        .join(packs.unique(["gtin", "serial"]), on=["gtin", "serial"], how="left")
        .join(by_gtin_lot, on=["gtin", "lot_number"], how="left")
        .join(by_nmpa_lot, on=["nmpa_drug_code", "lot_number"], how="left")
        .sort("_item")
    )
    return out.with_columns(
        pl.when(pl.col("kind") == "instance")
        .then(pl.coalesce("_pack_batch", "_gtin_lot_batch"))
        .when(pl.col("kind") == "lot")
        .then(pl.coalesce("_gtin_lot_batch", "_nmpa_lot_batch"))
        .alias("batch_id")
    ).drop("_item", "_pack_batch", "_gtin_lot_batch", "_nmpa_lot_batch")


def _unresolved_reason() -> pl.Expr:
    return pl.when(pl.col("kind") == "instance").then(pl.lit("unknown_pack")).otherwise(pl.lit("unknown_batch"))


def _unresolved_detail() -> pl.Expr:
    return pl.format(
        "{} {}: {}",
        pl.col("role"),
        pl.col("epc"),
        pl.when(pl.col("kind") == "instance")
        .then(pl.lit("no pack with this GTIN + serial"))
        .otherwise(pl.lit("no batch with this product + lot")),
    )


def build_supply_rows(
    frames: dict[str, pl.DataFrame], con: duckdb.DuckDBPyConnection
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(supply_event rows, quarantine rows, (seq, source_file) of every event quarantined whole)
    from the parsed frames. An event after the run's clock is ``after_run_clock``."""
    events = frames["events"].sort("seq")
    # the last delivery of an eventID wins (re-delivered files, corrections); earlier ones are quarantined
    last = events.unique("epcis_event_id", keep="last", maintain_order=True)
    superseded = events.join(last.select("seq"), on="seq", how="anti")
    events = last
    events = events.with_columns(_timestamp("event_time_text").alias("event_time"))
    items = resolve_items(frames["items"].join(events.select("seq"), on="seq", how="semi"), con)
    batch_facts = con.sql(
        "SELECT b.batch_id, b.lot_number AS _lot, p.gtin AS _gtin, p.nmpa_drug_code AS _nmpa "
        "FROM batch b JOIN product p USING (product_id)"
    ).pl()

    late = pl.lit(plausibility.enabled("not_after_clock")) & (pl.col("event_time") > run_clock())
    bad_time = events.filter(pl.col("event_time").is_null() | late).with_columns(
        pl.when(pl.col("event_time").is_null())
        .then(pl.lit("bad_timestamp"))
        .otherwise(pl.lit(plausibility.reason("not_after_clock")))
        .alias("_reason")
    )
    events = events.filter(pl.col("event_time").is_not_null() & ~late)
    items = items.join(events.select("seq"), on="seq", how="semi")

    traceable = items.filter(pl.col("kind").is_in(["lot", "instance"]))
    resolved = items.filter(pl.col("batch_id").is_not_null())
    seq_resolved = resolved.select("seq").unique()
    seq_traceable = traceable.select("seq").unique()
    ids = events.select("seq", "epcis_event_id", "source_file")

    # quarantine: whole events with nothing resolved, single items of partly resolved events
    unresolved = traceable.filter(pl.col("batch_id").is_null()).join(ids, on="seq")
    event_level = (
        unresolved.join(seq_resolved, on="seq", how="anti")
        .sort("seq", "role")
        .group_by("seq", maintain_order=True)
        .first()
    )
    item_level = unresolved.join(seq_resolved, on="seq", how="semi")
    no_ident = ids.join(seq_traceable, on="seq", how="anti").join(events.select("seq", "event_type"), on="seq")
    # event-level outcomes (for the row accounting: an event is loaded or quarantined, once)
    event_level_seqs = pl.concat(
        [
            superseded.select("seq", "source_file"),
            bad_time.select("seq", "source_file"),
            event_level.select("seq", "source_file"),
            no_ident.select("seq", "source_file"),
        ]
    )
    quarantine = pl.concat(
        [
            quarantine_frame(
                superseded.select(
                    "source_file",
                    pl.col("epcis_event_id").alias("record_key"),
                    pl.lit("superseded").alias("reason"),
                    pl.lit("eventID delivered again later (the later event is loaded)").alias("detail"),
                )
            ),
            quarantine_frame(
                bad_time.select(
                    "source_file",
                    pl.col("epcis_event_id").alias("record_key"),
                    pl.col("_reason").alias("reason"),
                    pl.format("eventTime {}", pl.col("event_time_text")).alias("detail"),
                )
            ),
            quarantine_frame(
                pl.concat([event_level, item_level.select(event_level.columns)])
                .sort("seq")
                .select(
                    "source_file",
                    pl.col("epcis_event_id").alias("record_key"),
                    _unresolved_reason().alias("reason"),
                    _unresolved_detail().alias("detail"),
                )
            ),
            quarantine_frame(
                no_ident.select(
                    "source_file",
                    pl.col("epcis_event_id").alias("record_key"),
                    pl.lit("no_lot_identifier").alias("reason"),
                    pl.format("{} names no lot class or pack instance", pl.col("event_type")).alias("detail"),
                )
            ),
        ]
    )

    grouped = (
        resolved.with_columns(pl.col("role").replace_strict(_ROLE_ORDER, return_dtype=pl.Int8).alias("_ro"))
        .group_by("seq", "_ro", "role", "batch_id")
        .agg(
            pl.col("epc").filter(~pl.col("instance")).first().alias("epc_class"),
            pl.col("epc").filter(pl.col("instance")).first().alias("_first_instance"),
            pl.col("instance").sum().cast(pl.Int32).alias("epc_count"),
            pl.col("quantity").sum().alias("quantity"),
            pl.col("quantity").is_null().all().alias("_no_qty"),
        )
        .sort("seq", "_ro", "batch_id")
    )
    grouped = grouped.with_columns(
        pl.when(pl.col("_no_qty")).then(None).otherwise(pl.col("quantity")).alias("quantity"),
        pl.coalesce("epc_class", "_first_instance").alias("epc_class"),
        pl.when(pl.col("epc_count") > 0).then(pl.col("epc_count")).alias("epc_count"),
        pl.int_range(pl.len()).over("seq").alias("_n"),
        pl.len().over("seq").alias("_rows"),
    )
    rows = (
        grouped.join(events, on="seq")
        .join(batch_facts, on="batch_id", how="left")
        .select(
            pl.when(pl.col("_rows") == 1)
            .then(pl.col("epcis_event_id"))
            .otherwise(pl.format("{}#{}", pl.col("epcis_event_id"), pl.col("_n")))
            .alias("event_id"),
            "event_type",
            "action",
            "biz_step",
            "disposition",
            "event_time",
            "read_point",
            "biz_location",
            "source_location",
            "destination_location",
            "epc_class",
            pl.col("_gtin").alias("gtin"),
            pl.col("_nmpa").alias("nmpa_drug_code"),
            pl.col("_lot").alias("lot_number"),
            "batch_id",
            "quantity",
            "consignment_id",
            "region",
            "min_temp_c",
            "max_temp_c",
            "source_file",
            "epcis_event_id",
            "role",
            "parent_id",
            "epc_count",
            "sensor_readings",
            "seq",
        )
        .sort("seq", "event_id")
    )
    return rows, quarantine, event_level_seqs


def build_excursions(rows: pl.DataFrame, readings: pl.DataFrame, con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row per (event, batch) with a temperature outside the product's storage range."""
    ranges = con.sql(
        "SELECT b.batch_id, b.product_id, p.storage_min_c, p.storage_max_c FROM batch b JOIN product p USING (product_id)"
    ).pl()
    per_batch = (
        rows.select("seq", "epcis_event_id", "batch_id", "event_time", "biz_step", "consignment_id", "region")
        .unique(["seq", "batch_id"])
        .join(ranges, on="batch_id")
    )
    r = readings.with_columns(_timestamp("start").alias("start"), _timestamp("end").alias("end"))
    joined = per_batch.join(r, on="seq").with_columns(
        ((pl.col("high") > pl.col("storage_max_c")) | (pl.col("low") < pl.col("storage_min_c"))).alias("_out")
    )
    out = joined.filter(pl.col("_out"))
    agg = out.group_by("seq", "batch_id").agg(
        pl.len().cast(pl.Int32).alias("readings_out_of_range"),
        pl.col("start").min().alias("first_out_of_range_at"),
        pl.col("end").max().alias("last_out_of_range_at"),
        pl.col("start").sort_by("high", descending=True).first().alias("peak_at"),
    )
    counts = joined.group_by("seq", "batch_id").agg(
        pl.len().cast(pl.Int32).alias("readings"),
        pl.col("low").min().alias("min_temp_c"),
        pl.col("high").max().alias("max_temp_c"),
    )
    excursions = (
        per_batch.join(agg, on=["seq", "batch_id"])
        .join(counts, on=["seq", "batch_id"])
        .with_columns(
            ((pl.col("last_out_of_range_at") - pl.col("first_out_of_range_at")).dt.total_seconds() / 60.0).alias(
                "duration_minutes"
            )
        )
    )
    return excursions.sort("event_time", "batch_id").select(
        "batch_id",
        "product_id",
        pl.col("epcis_event_id").alias("event_id"),
        "event_time",
        "biz_step",
        "consignment_id",
        "region",
        "min_temp_c",
        "max_temp_c",
        "storage_min_c",
        "storage_max_c",
        "readings",
        "readings_out_of_range",
        "first_out_of_range_at",
        "last_out_of_range_at",
        "peak_at",
        "duration_minutes",
    )


def load_supply_events(con: duckdb.DuckDBPyConnection, inbox: Path, *, validate: bool = True) -> dict[str, int]:
    files = inbox_files(inbox, "supply", required=False)
    validated = len(files) if _validator(validate) is not None else 0
    frames, rejected = read_epcis_inbox(files, validate=validate)
    rows, unresolved, event_level = build_supply_rows(frames, con)
    excursions = build_excursions(rows, frames["readings"], con)
    quarantine = pl.concat([quarantine_frame(rejected), unresolved])
    # accounting per file, in events: loaded (≥ 1 supply_event row) + quarantined whole = read
    whole_events = pl.concat(
        [
            pl.DataFrame(
                [(r["_seq"], r["source_file"]) for r in rejected if r.get("_seq") is not None],
                schema={"seq": pl.Int64, "source_file": pl.String},
                orient="row",
            ),
            event_level,
        ]
    ).unique()
    accounts = []
    for f, info in zip(files, frames["files"].iter_rows(named=True), strict=True):
        acc = FileAccount(f, "epcis-jsonld", rows_read=info["events"], error=info["error"])
        accounts.append(acc)
    loaded = counts_by_file(rows.select("seq", "source_file").unique()["source_file"]) if rows.height else {}
    account(accounts, loaded, quarantine_frame(whole_events.with_columns(pl.lit("x").alias("reason"))))
    counts = {
        "supply_events": replace_rows(con, "supply_event", rows.drop("seq")),
        "cold_chain_excursions": replace_rows(con, "cold_chain_excursion", excursions),
        "quarantined": replace_quarantine(con, "supply", quarantine),
        "documents_validated": validated,
    }
    counts.update(write_manifest(con, "supply", accounts))
    record_ingested(con, files)
    return counts


#: excursions per event × batch (readers: evidence queries, batch traceability, alerts)
COLD_CHAIN_EXCURSIONS_SQL = """
    SELECT batch_id, product_id, event_id, event_time, biz_step, consignment_id, region,
           min_temp_c, max_temp_c, storage_min_c, storage_max_c, readings, readings_out_of_range,
           first_out_of_range_at, last_out_of_range_at, peak_at, duration_minutes
    FROM cold_chain_excursion
"""
