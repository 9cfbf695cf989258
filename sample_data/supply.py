"""EPCIS 2.0 supply events of the synthetic world: commissioning, shipping, receiving per lot.

Why lot level: pharma traceability platforms exchange lot-class quantities between trading
partners (instance-level serials stay in the serialisation upload, ``packs/``). Each
consignment is one batch's shipment from its manufacturing site to one regional distribution
centre; cold-chain products carry temperature loggers whose readings travel on the shipping
event. One consignment of the planted cold-chain batch has a reefer failure.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import polars as pl

from sample_data.vocabulary import DISTRIBUTOR_PREFIX, MANUFACTURERS

EPCIS_CONTEXT = [
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    {"pvtrace": "https://pvtrace.example/voc/"},
]

#: standard-time UTC offset of each manufacturing country (sites)
SITE_OFFSET = {"CN": "+08:00", "DE": "+01:00", "FR": "+01:00", "IE": "+00:00", "US": "-05:00", "JP": "+09:00"}

READING_EVERY_S = 2 * 3600


def _offset_seconds(offset: str) -> int:
    sign = 1 if offset[0] == "+" else -1
    return sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)


def iso_local(utc_s: int, offset: str) -> str:
    """ISO 8601 local time with offset, e.g. ``2024-03-04T06:00:00.000+08:00``."""
    tz = timezone(timedelta(seconds=_offset_seconds(offset)))
    return datetime.fromtimestamp(int(utc_s), tz=tz).strftime("%Y-%m-%dT%H:%M:%S.000") + offset


def iso_utc(utc_s: int) -> str:
    return datetime.fromtimestamp(int(utc_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_id(*parts: object) -> str:
    """Deterministic EPCIS event id (hash of the event's identifying facts, CBV 2.0 style)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


def site_sgln(mfr_index: int, mfr_country: str, prefix: str) -> str:
    """SGLN of a manufacturing site; US labelers use their NDC-based GS1 prefix 03 + labeler."""
    company = ("03" + prefix) if mfr_country == "US" else prefix
    company = company[-7:].rjust(7, "0")
    return f"urn:epc:id:sgln:{company}.{10 + mfr_index:05d}.0"


def dc_sgln(market: str, s: int) -> str:
    """SGLN of the regional distribution centre serving subdivision ``s``."""
    return f"urn:epc:id:sgln:{DISTRIBUTOR_PREFIX[market]}.{100 + s:05d}.0"


def lot_class(gtin: str, nmpa: str, lot: str) -> str:
    """Lot class id: GS1 Digital Link for GTIN products, a pvtrace URN for NMPA-only ones."""
    if gtin:
        return f"https://id.gs1.org/01/{gtin}/10/{lot}"
    return f"urn:pvtrace:nmpa:{nmpa}:lot:{lot}"


def temperature_profile(
    rng: np.random.Generator, start_s: int, end_s: int, excursion: bool, apply: bool = True
) -> tuple[list[int], list[float]]:
    """Logger readings every 2 h in transit: ~5 degC, or a reefer failure peaking >8 degC.
    ``apply=False`` draws the failure (same random stream) but leaves the readings normal."""
    times = list(range(start_s + 1800, end_s, READING_EVERY_S))
    temps = np.clip(5.0 + 0.6 * np.sin(np.arange(len(times)) / 3) + rng.normal(0, 0.35, len(times)), 2.6, 7.6)
    if excursion and len(times) >= 8:
        peak = len(times) // 3
        max_temp = round(float(rng.uniform(19.0, 24.0)), 1)
        if not apply:
            return times, [round(float(t), 1) for t in temps]
        ramp = np.array([0.25, 0.55, 0.85, 1.0, 0.9, 0.6, 0.3])
        for k, f in enumerate(ramp):
            i = peak - 3 + k
            temps[i] = max(temps[i], 5.0 + f * (max_temp - 5.0))
        temps[peak] = max_temp
    return times, [round(float(t), 1) for t in temps]


def build_epcis(
    rng: np.random.Generator,
    batches: pl.DataFrame,
    consignments: pl.DataFrame,
    products: pl.DataFrame,
    subregions: pl.DataFrame,
    excursion_c: int,
    plant_excursion: bool = True,
) -> tuple[dict[str, dict], dict]:
    """EPCIS documents per month of event time, and the planted excursion's facts
    (``plant_excursion=False``: none planted, an empty dict; the random draws are the same)."""
    mfr_ix = {m.manufacturer_id: i for i, m in enumerate(MANUFACTURERS)}
    prod = products.to_dicts()
    sub = subregions.to_dicts()
    events: list[tuple[int, str, dict]] = []
    excursion: dict = {}
    bat = batches.to_dicts()
    site_of_b: dict[int, tuple[str, str]] = {}

    for b in bat:
        pr = prod[b["p"]]
        m = MANUFACTURERS[mfr_ix[pr["manufacturer_id"]]]
        offset = SITE_OFFSET[m.country]
        sgln = site_sgln(mfr_ix[m.manufacturer_id], m.country, m.gs1_prefix)
        site_of_b[b["b"]] = (sgln, offset)
        made = datetime(b["manufactured_on"].year, b["manufactured_on"].month, b["manufactured_on"].day, tzinfo=UTC)
        t = int(made.timestamp()) + 6 * 3600 - _offset_seconds(offset)
        cls = lot_class(pr["gtin"], pr["nmpa_drug_code"], b["lot_number"])
        events.append(
            (
                t,
                offset,
                {
                    "type": "ObjectEvent",
                    "eventTime": iso_local(t, offset),
                    "eventTimeZoneOffset": offset,
                    "eventID": event_id("commissioning", b["batch_id"]),
                    "action": "ADD",
                    "bizStep": "commissioning",
                    "disposition": "active",
                    "quantityList": [{"epcClass": cls, "quantity": b["units_released"]}],
                    "readPoint": {"id": sgln},
                    "bizLocation": {"id": sgln},
                    "ilmd": {"cbvmda:lotNumber": b["lot_number"], "cbvmda:itemExpirationDate": str(b["expiry_on"])},
                },
            )
        )

    cons = consignments.to_dicts()
    ship_delay = rng.integers(0, 3, len(cons))
    ship_hour = rng.integers(6 * 3600, 18 * 3600, len(cons))
    transit = rng.integers(18 * 3600, 72 * 3600, len(cons))
    for k, c in enumerate(cons):
        b = bat[c["b"]]
        pr = prod[b["p"]]
        site, site_off = site_of_b[c["b"]]
        s = sub[c["s"]]
        dc = dc_sgln(s["market"], c["s"])
        rel = datetime(b["released_on"].year, b["released_on"].month, b["released_on"].day, tzinfo=UTC)
        ship_t = int(rel.timestamp()) + int(ship_delay[k]) * 86_400 + int(ship_hour[k]) - _offset_seconds(site_off)
        recv_t = ship_t + int(transit[k])
        cls = lot_class(pr["gtin"], pr["nmpa_drug_code"], b["lot_number"])
        common = {
            "quantityList": [{"epcClass": cls, "quantity": c["units"]}],
            "sourceList": [{"type": "location", "source": site}],
            "destinationList": [{"type": "location", "destination": dc}],
            "pvtrace:consignmentId": c["consignment_id"],
            "pvtrace:region": s["region"],
        }
        shipping = {
            "type": "ObjectEvent",
            "eventTime": iso_local(ship_t, site_off),
            "eventTimeZoneOffset": site_off,
            "eventID": event_id("shipping", c["consignment_id"]),
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "readPoint": {"id": site},
            **common,
        }
        if pr["cold_chain"]:
            planted = c["c"] == excursion_c
            times, temps = temperature_profile(rng, ship_t, recv_t, planted, apply=plant_excursion)
            device = f"urn:epc:id:giai:{DISTRIBUTOR_PREFIX[s['market']]}.{c['c']:08d}"
            shipping["sensorElementList"] = [
                {
                    "sensorMetadata": {"time": iso_utc(t), "deviceID": device},
                    "sensorReport": [{"type": "gs1:Temperature", "value": v, "uom": "CEL", "time": iso_utc(t)}],
                }
                for t, v in zip(times, temps)
            ]
            if planted and plant_excursion:
                i = int(np.argmax(temps))
                excursion = {
                    "excursion_at": iso_utc(times[i]),
                    "max_temp_c": temps[i],
                    "event_id": shipping["eventID"],
                    "readings_above_max": int(sum(v > 8.0 for v in temps)),
                }
        dc_off = s["utc_offset"]
        receiving = {
            "type": "ObjectEvent",
            "eventTime": iso_local(recv_t, dc_off),
            "eventTimeZoneOffset": dc_off,
            "eventID": event_id("receiving", c["consignment_id"]),
            "action": "OBSERVE",
            "bizStep": "receiving",
            "disposition": "in_progress",
            "readPoint": {"id": dc},
            "bizLocation": {"id": dc},
            **common,
        }
        events.append((ship_t, site_off, shipping))
        events.append((recv_t, dc_off, receiving))

    events.sort(key=lambda e: (e[0], e[2]["eventID"]))
    docs: dict[str, dict] = {}
    for t, _, ev in events:
        month = iso_utc(t)[:7]
        doc = docs.setdefault(
            month,
            {
                "@context": EPCIS_CONTEXT,
                "type": "EPCISDocument",
                "schemaVersion": "2.0",
                "creationDate": "",
                "epcisBody": {"eventList": []},
            },
        )
        doc["epcisBody"]["eventList"].append(ev)
        doc["creationDate"] = iso_utc(t + 3600)  # written an hour after its last event
    return docs, excursion
