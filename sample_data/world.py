"""Seeded synthetic world: reference data, batches, packs, supply, deliveries, use logs, cases.

``generate_world(out_dir, seed, scale)`` writes an inbox exactly as docs/inbox-format.md
describes and returns the planted ground truth. Design choices (why):

* one ``numpy.random.Generator`` drawn in a fixed order and outputs sorted by their keys, so the
  same seed and scale give byte-identical files (no wall clock anywhere);
* exposure first, cases second: every adverse-event report is generated *from* a delivery, so
  the true batch behind each report is known and linkage can be scored;
* column-wise numpy/polars throughout; only the per-case JSON and per-event EPCIS objects are
  built in Python, because they are nested documents by nature.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from sample_data import cases as case_gen
from sample_data import codes, supply
from sample_data.verbatims import write_patient_verbatims
from sample_data.vocabulary import (
    MANUFACTURERS,
    MARKET_SHARE,
    PRODUCTS,
    SUBREGIONS,
    Manufacturer,
)

WORLD_START = np.datetime64("2024-01-01", "D")
WORLD_END = np.datetime64("2025-12-31", "D")
FIRST_RELEASE = np.datetime64("2022-07-01", "D")
LAST_RELEASE = np.datetime64("2025-11-30", "D")
SECONDS_PER_DAY = 86_400

#: subfolders this generator owns; emptied before writing so re-runs overwrite cleanly
OWNED_SUBDIRS = ("reference", "packs", "supply", "deliveries", "medication_logs", "cases")
OWNED_FILES = ("ground_truth.json", "ground_truth_case_batches.parquet", "ground_truth_background_rates.parquet")


# ============================================================================================
# Reference data
# ============================================================================================


def _subregion_table() -> pl.DataFrame:
    """One row per subdivision with its market, country, population weight and UTC offset."""
    rows = []
    for market, subs in SUBREGIONS.items():
        for code, country, weight, offset in subs:
            sign = 1 if offset[0] == "+" else -1
            seconds = sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
            rows.append((code, market, country, weight, offset, seconds))
    return pl.DataFrame(
        rows, schema=["region", "market", "country", "weight", "utc_offset", "offset_s"], orient="row"
    ).with_row_index("s")


def build_manufacturers() -> pl.DataFrame:
    """reference/manufacturers.csv: legal entities and where their batch alerts go."""
    return pl.DataFrame(
        {
            "manufacturer_id": [m.manufacturer_id for m in MANUFACTURERS],
            "name": [m.name for m in MANUFACTURERS],
            "country": [m.country for m in MANUFACTURERS],
            "region": [m.region for m in MANUFACTURERS],
            "alert_email": [f"pv-batch-alerts@{m.domain}" for m in MANUFACTURERS],
            "alert_webhook_url": [
                f"https://hooks.{m.domain}/pvtrace/alerts" if i % 2 == 0 else "" for i, m in enumerate(MANUFACTURERS)
            ],
        }
    )


def _manufacturer(mid: str) -> Manufacturer:
    return next(m for m in MANUFACTURERS if m.manufacturer_id == mid)


def build_products(rng: np.random.Generator) -> pl.DataFrame:
    """reference/products.csv plus the internal attributes the simulation needs.

    Identifiers follow each market's regime: GTIN-14 for EU/JP, NDC10 and its NDC-based
    GTIN-14 for the US, a 7-digit NMPA drug identification code (starting with 8, as the
    20-digit codes do) for China.
    """
    item_refs = rng.choice(90_000, size=len(PRODUCTS), replace=False) + 10_000
    nmpa_codes = rng.choice(900_000, size=len(PRODUCTS), replace=False) + 8_100_000
    ndc_product = rng.choice(900, size=len(PRODUCTS), replace=False) + 100
    rows = []
    for i, p in enumerate(PRODUCTS):
        mfr = _manufacturer(p.manufacturer_id)
        gtin = ndc = nmpa = ""
        if p.region == "US":
            ndc = f"{mfr.gs1_prefix}-{ndc_product[i]:03d}-{(i * 7 + 1) % 100:02d}"
            gtin = codes.ndc_gtin14(ndc)
        elif p.region == "CN":
            nmpa = f"{nmpa_codes[i]:07d}"
        else:
            gtin = codes.gtin14(mfr.gs1_prefix, f"{item_refs[i]:05d}")
        injectable = p.route in ("intramuscular", "subcutaneous", "intravenous")
        rows.append(
            {
                "product_id": f"PRD-{i + 1:03d}",
                "name": p.name,
                "manufacturer_id": p.manufacturer_id,
                "ingredient": p.ingredient,
                "atc_code": p.atc_code,
                "form": p.form,
                "strength": p.strength,
                "route": p.route,
                "region": p.region,
                "gtin": gtin,
                "ndc": ndc,
                "nmpa_drug_code": nmpa,
                "storage_min_c": 2.0 if p.cold_chain else 15.0,
                "storage_max_c": 8.0 if p.cold_chain else (25.0 if injectable else 30.0),
                "additional_monitoring": p.additional_monitoring,
                # internal (not written)
                "chronic": p.chronic,
                "popularity": p.popularity,
                "doses_per_week": p.doses_per_week,
                "weeks_supply": p.weeks_supply,
                "shelf_life_months": p.shelf_life_months,
                "cold_chain": p.cold_chain,
                "batch_every_days": p.batch_every_days,
                "injectable": injectable,
                "code_system": "nmpa" if p.region == "CN" else "gs1",
                "seasonal_flu": p.atc_code == "J07BB02",
            }
        )
    return pl.DataFrame(rows).with_row_index("p")


PRODUCT_COLUMNS = [
    "product_id",
    "name",
    "manufacturer_id",
    "ingredient",
    "atc_code",
    "form",
    "strength",
    "route",
    "region",
    "gtin",
    "ndc",
    "nmpa_drug_code",
    "storage_min_c",
    "storage_max_c",
    "additional_monitoring",
]


# ============================================================================================
# Batches
# ============================================================================================


def _release_dates(rng: np.random.Generator, every_days: int, seasonal_flu: bool) -> np.ndarray:
    """Release dates of one product's batches: regular campaigns, or per flu season."""
    if seasonal_flu:
        # influenza vaccines are made per season: a few lots released Aug..mid-Oct each year
        out = []
        for year in (2023, 2024, 2025):
            n = int(rng.integers(3, 5))
            start = np.datetime64(f"{year}-08-01", "D")
            out.extend(start + np.sort(rng.integers(0, 75, n)))
        return np.array(out, dtype="datetime64[D]")
    span = int((LAST_RELEASE - FIRST_RELEASE) / np.timedelta64(1, "D"))
    n_max = span // max(1, int(every_days * 0.7)) + 2
    gaps = np.round(every_days * rng.uniform(0.7, 1.3, n_max)).astype(np.int64)
    offsets = int(rng.integers(0, every_days)) + np.concatenate([[0], np.cumsum(gaps)[:-1]])
    return FIRST_RELEASE + offsets[offsets <= span].astype("timedelta64[D]")


def _lot_number(rng: np.random.Generator, style: str, made: np.datetime64, k: int) -> str:
    """A lot number in the manufacturer's house style (all upper-case alphanumerics)."""
    y, m, d = str(made).split("-")
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    a = letters[int(rng.integers(0, len(letters)))]
    b = letters[int(rng.integers(0, len(letters)))]
    n4 = int(rng.integers(1000, 10_000))
    if style == "CN":
        return f"{y[2:]}{m}{d}{k % 100:02d}"  # 24031501
    if style == "DE":
        return f"R{y[2:]}{n4 % 1000:03d}{a}"  # R24117A
    if style == "FR":
        return f"{a}{b}{y[3]}{n4}"  # VL41234
    if style == "IE":
        return f"CB{y[2:]}{n4 % 100:02d}-{k % 100:02d}"  # CB2419-03
    if style == "US":
        return f"{a}{n4}{b}"  # N4821C
    return f"{y[3]}{a}{n4 % 1000:03d}"  # 4K217 (JP)


def build_batches(rng: np.random.Generator, products: pl.DataFrame) -> pl.DataFrame:
    """reference/batches.csv without ``units_released`` (sized later from demand).

    Dates: manufactured 20-60 days before QC release; expiry = last day of the month before
    manufacture + shelf life (how packs print it).
    """
    rows = []
    for prod in products.iter_rows(named=True):
        mfr = _manufacturer(prod["manufacturer_id"])
        releases = _release_dates(rng, prod["batch_every_days"], prod["seasonal_flu"])
        made = releases - rng.integers(20, 61, len(releases)).astype("timedelta64[D]")
        expiry = (made.astype("datetime64[M]") + prod["shelf_life_months"]).astype("datetime64[D]") - np.timedelta64(
            1, "D"
        )
        style = mfr.country if mfr.country in ("CN", "DE", "FR", "IE", "US") else "JP"
        seen: set[str] = set()
        for k, (rel, mde, exp) in enumerate(zip(releases, made, expiry)):
            lot = _lot_number(rng, style, mde, k + 1)
            while lot in seen:
                lot = _lot_number(rng, style, mde, k + 1)
            seen.add(lot)
            rows.append(
                {
                    "p": prod["p"],
                    "product_id": prod["product_id"],
                    "lot_number": lot,
                    "site": mfr.site,
                    "manufactured_on": mde.item(),
                    "expiry_on": exp.item(),
                    "released_on": rel.item(),
                }
            )
    df = pl.DataFrame(rows)
    df = df.sort(["p", "released_on", "lot_number"]).with_row_index("b")
    return df.with_columns(batch_id=pl.format("BAT-{}", pl.col("b").add(1).cast(pl.String).str.pad_start(5, "0")))


# ============================================================================================
# Patients and their deliveries
# ============================================================================================


def _pick(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(weights), size=n, p=weights / weights.sum())


def build_patients(rng: np.random.Generator, subregions: pl.DataFrame, scale: float) -> pl.DataFrame:
    """Pseudonymous patients: market, subdivision, home pharmacy, age, sex, app use, kind.

    ``kind`` 1 = chronic (monthly refills of 1-2 products), 0 = acute (one-off courses).
    """
    n_chronic = max(40, round(10_000 * scale))
    n_acute = max(160, round(40_000 * scale))
    n = n_chronic + n_acute
    chronic = np.zeros(n, dtype=bool)
    chronic[:n_chronic] = True
    markets = list(MARKET_SHARE)
    market = _pick(rng, np.array([MARKET_SHARE[m] for m in markets]), n)
    sub_market = subregions["market"].to_numpy()
    sub_weight = subregions["weight"].to_numpy()
    s = np.empty(n, dtype=np.int64)
    for mi, m in enumerate(markets):
        idx = np.flatnonzero(market == mi)
        cand = np.flatnonzero(sub_market == m)
        s[idx] = cand[_pick(rng, sub_weight[cand], len(idx))]
    # pharmacies per subdivision grow slower than patients (bigger pharmacies at scale)
    n_pharm = np.maximum(
        3, np.round(400 * np.sqrt(scale) * sub_weight * np.array([MARKET_SHARE[m] for m in sub_market]))
    ).astype(np.int64)
    pharmacy = np.floor(rng.random(n) * n_pharm[s]).astype(np.int64) + 1
    age = np.where(chronic, rng.normal(64, 12, n), rng.normal(42, 20, n))
    refs = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    return pl.DataFrame(
        {
            "patient_ref": [f"PAT-{r:07d}" for r in refs],
            "market": np.array(markets)[market],
            "s": s,
            "home_pharmacy": pharmacy,
            "age_years": np.clip(np.round(age), 1, 97).astype(np.int64),
            "sex": np.where(rng.random(n) < 0.53, "F", "M"),
            "app_user": rng.random(n) < 0.6,
            "chronic": chronic,
            "adherence": rng.beta(8, 1.6, n),
        }
    ).with_row_index("pt")


def _day_weights(seasonal_flu: bool, antibiotic: bool) -> np.ndarray:
    """Relative delivery volume per calendar day of the world (seasonality)."""
    days = np.arange(WORLD_START, WORLD_END + np.timedelta64(1, "D"))
    month = (days.astype("datetime64[M]").astype(np.int64) % 12) + 1
    if seasonal_flu:
        w = np.select(
            [np.isin(month, [10, 11]), np.isin(month, [9, 12]), np.isin(month, [1, 2])], [1.0, 0.5, 0.12], 0.01
        )
    elif antibiotic:
        w = np.where(np.isin(month, [12, 1, 2, 3]), 1.5, 1.0)
    else:
        w = np.ones(len(days))
    return w / w.sum()


def schedule_chronic(
    rng: np.random.Generator, patients: pl.DataFrame, products: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monthly refills: (patient, product, day offset from WORLD_START) per delivery.

    Prevalent patients are already on therapy at the world's start; incident ones start at a
    uniform day. Persistence is geometric (mean ~16 refills); refills come a little late.
    """
    pat = patients.filter(pl.col("chronic"))
    n_days = int((WORLD_END - WORLD_START) / np.timedelta64(1, "D")) + 1
    pair_pt, pair_p = [], []
    for market in MARKET_SHARE:
        sub = pat.filter(pl.col("market") == market)["pt"].to_numpy()
        cand = products.filter(pl.col("chronic") & (pl.col("region") == market))
        pidx, pop = cand["p"].to_numpy(), cand["popularity"].to_numpy()
        first = pidx[_pick(rng, pop, len(sub))]
        two = rng.random(len(sub)) < 0.35
        second = pidx[_pick(rng, pop, len(sub))]
        two &= second != first
        pair_pt += [sub, sub[two]]
        pair_p += [first, second[two]]
    pair_pt, pair_p = np.concatenate(pair_pt), np.concatenate(pair_p)
    n_pairs = len(pair_pt)
    prevalent = rng.random(n_pairs) < 0.55
    start = np.where(prevalent, rng.integers(0, 31, n_pairs), rng.integers(0, n_days, n_pairs))
    n_fills = np.minimum(rng.geometric(1 / 16, n_pairs), 40)
    weeks = products["weeks_supply"].to_numpy()[pair_p]
    rep = np.repeat(np.arange(n_pairs), n_fills)
    gap = np.maximum(weeks[rep] * 7 - 4, np.round(weeks[rep] * 7 + rng.normal(2, 3, len(rep))))
    first_of_group = np.r_[0, np.cumsum(n_fills)[:-1]]
    gap[first_of_group] = 0
    csum = np.cumsum(gap)
    offset = start[rep] + (csum - np.repeat(csum[first_of_group], n_fills))
    keep = offset < n_days
    return pair_pt[rep][keep], pair_p[rep][keep], offset[keep].astype(np.int64)


def schedule_acute(
    rng: np.random.Generator, patients: pl.DataFrame, products: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-off courses (antibiotics, analgesics, vaccines); a quarter have a second course."""
    pat = patients.filter(~pl.col("chronic"))
    n_days = int((WORLD_END - WORLD_START) / np.timedelta64(1, "D")) + 1
    out_pt, out_p, out_day = [], [], []
    for market in MARKET_SHARE:
        sub = pat.filter(pl.col("market") == market)["pt"].to_numpy()
        cand = products.filter(~pl.col("chronic") & (pl.col("region") == market))
        pidx, pop = cand["p"].to_numpy(), cand["popularity"].to_numpy()
        for course in (0, 1):
            who = sub if course == 0 else sub[rng.random(len(sub)) < 0.25]
            prod = pidx[_pick(rng, pop, len(who))]
            day = np.empty(len(who), dtype=np.int64)
            for row in cand.iter_rows(named=True):
                m = prod == row["p"]
                w = _day_weights(row["seasonal_flu"], row["atc_code"].startswith("J01"))
                day[m] = rng.choice(n_days, size=int(m.sum()), p=w)
            out_pt.append(who)
            out_p.append(prod)
            out_day.append(day)
    return np.concatenate(out_pt), np.concatenate(out_p), np.concatenate(out_day)


def assign_batches(
    rng: np.random.Generator, product: np.ndarray, when_day: np.ndarray, batches: pl.DataFrame
) -> np.ndarray:
    """Batch of each delivery: roughly first-in-first-out stock at the pharmacy.

    The pharmacy dispenses the latest batch released at least ``lag`` days earlier (lag 10 +
    exponential, mean 40 days: stock moves through wholesalers); a batch expiring within 30
    days is skipped for the next one. -1 where no batch qualifies (delivery is dropped).
    """
    rel = ((batches["released_on"].to_numpy() - WORLD_START) / np.timedelta64(1, "D")).astype(np.int64)
    exp = ((batches["expiry_on"].to_numpy() - WORLD_START) / np.timedelta64(1, "D")).astype(np.int64)
    bp = batches["p"].to_numpy()
    lag = 10 + np.round(rng.exponential(40, len(product))).astype(np.int64)
    out = np.full(len(product), -1, dtype=np.int64)
    for p in np.unique(product):
        m = np.flatnonzero(product == p)
        bidx = np.flatnonzero(bp == p)
        r, e = rel[bidx], exp[bidx]
        t = when_day[m]
        k = np.searchsorted(r, t - lag[m], side="right") - 1
        k_min = np.searchsorted(r, t - 10, side="right") - 1  # newest batch on shelves
        k = np.maximum(k, 0)
        for _ in range(len(bidx)):
            bad = (e[np.minimum(k, len(r) - 1)] <= t + 30) & (k < k_min)
            if not bad.any():
                break
            k = np.where(bad, k + 1, k)
        ok = (k <= k_min) & (k_min >= 0) & (r[np.minimum(k, len(r) - 1)] <= t - 7) & (e[np.minimum(k, len(r) - 1)] > t)
        out[m] = np.where(ok, bidx[np.minimum(k, len(r) - 1)], -1)
    return out


#: share of the deliveries falling on a Saturday / Sunday that the pharmacy hands out on the
#: following Monday instead (weekend opening hours): Monday peaks, Sunday is ~1/4 of a weekday
WEEKEND_SHIFT = {5: 0.35, 6: 0.75}


def weekday_pattern(rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
    """Move part of the weekend's deliveries to the next Monday (day 0, 2024-01-01, is a Monday)."""
    n_days = int((WORLD_END - WORLD_START) / np.timedelta64(1, "D")) + 1
    weekday = day % 7
    u = rng.random(len(day))
    shift = np.zeros(len(day), dtype=np.int64)
    for wd, share in WEEKEND_SHIFT.items():
        shift = np.where((weekday == wd) & (u < share), 7 - wd, shift)
    return np.where(day + shift < n_days, day + shift, day)


def build_deliveries(
    rng: np.random.Generator,
    patients: pl.DataFrame,
    products: pl.DataFrame,
    batches: pl.DataFrame,
    subregions: pl.DataFrame,
) -> pl.DataFrame:
    """Good deliveries (before pack assignment): patient, product, batch, place and time."""
    c_pt, c_p, c_day = schedule_chronic(rng, patients, products)
    a_pt, a_p, a_day = schedule_acute(rng, patients, products)
    pt = np.concatenate([c_pt, a_pt])
    p = np.concatenate([c_p, a_p])
    day = np.concatenate([c_day, a_day])
    day = weekday_pattern(rng, day)
    b = assign_batches(rng, p, day, batches)
    keep = b >= 0
    pt, p, day, b = pt[keep], p[keep], day[keep], b[keep]
    n = len(pt)
    s = patients["s"].to_numpy()[pt]
    home = patients["home_pharmacy"].to_numpy()[pt]
    # 1 in 10 deliveries happen at another pharmacy of the same subdivision
    other = rng.random(n) < 0.1
    pharm = np.where(other, rng.integers(1, 4, n), home)
    local_s = day * SECONDS_PER_DAY + rng.integers(8 * 3600, 20 * 3600, n)
    utc_s = WORLD_START.astype("datetime64[s]").astype(np.int64) + local_s - subregions["offset_s"].to_numpy()[s]
    return pl.DataFrame(
        {"pt": pt, "p": p, "b": b, "s": s, "pharmacy_n": pharm, "day": day, "utc_s": utc_s, "order": rng.random(n)}
    )


# ============================================================================================
# Consignments and packs
# ============================================================================================


def plan_consignments(
    rng: np.random.Generator,
    deliveries: pl.DataFrame,
    batches: pl.DataFrame,
    products: pl.DataFrame,
    subregions: pl.DataFrame,
    scale: float,
) -> pl.DataFrame:
    """One consignment per (batch, subdivision of its market): the lot shipped to that DC.

    Units are sized from observed demand times a market factor (our pharmacies see only part
    of the market), so every delivery gets its own distinct pack.
    """
    market_of_p = products.select("p", market="region")
    subs = subregions.select("s", "market")
    grid = batches.select("b", "p").join(market_of_p, on="p").join(subs, on="market")
    demand = deliveries.group_by(["b", "s"]).len("demand")
    grid = grid.join(demand, on=["b", "s"], how="left").with_columns(pl.col("demand").fill_null(0))
    grid = grid.sort(["b", "s"])
    n = grid.height
    factor = rng.uniform(1.25, 2.2, n)
    base = np.round(rng.uniform(15, 90, n) * scale)
    units = np.maximum(1, np.ceil(grid["demand"].to_numpy() * factor) + base).astype(np.int64)
    return (
        grid.with_columns(units=pl.Series(units))
        .with_row_index("c")
        .with_columns(consignment_id=pl.format("CNS-{}", pl.col("c").add(1).cast(pl.String).str.pad_start(6, "0")))
    )


def serialise_packs(
    rng: np.random.Generator, consignments: pl.DataFrame, batches: pl.DataFrame, products: pl.DataFrame
) -> pl.DataFrame:
    """One row per released pack: serial, code as serialised, commissioning time.

    GS1 packs get a random 12-character serial (EU FMD asks for randomised serials) and the HRI
    code; NMPA packs get a 20-digit code = 7-digit drug code + 13 random digits (the serial).
    """
    units = consignments["units"].to_numpy()
    c = np.repeat(consignments["c"].to_numpy(), units)
    b = np.repeat(consignments["b"].to_numpy(), units)
    n = len(c)
    first_of_batch = np.r_[0, np.flatnonzero(np.diff(b)) + 1]
    batch_len = np.diff(np.r_[first_of_batch, n])
    within_batch = np.arange(n) - np.repeat(first_of_batch, batch_len)
    first_of_cons = np.r_[0, np.cumsum(units)[:-1]]
    within_cons = np.arange(n) - np.repeat(first_of_cons, units)
    p = batches["p"].to_numpy()[b]
    nmpa = (products["code_system"].to_numpy() == "nmpa")[p]
    serial = np.empty(n, dtype="U13")
    serial[~nmpa] = codes.unique_random_strings(rng, int((~nmpa).sum()), 12)
    serial[nmpa] = codes.unique_random_strings(rng, int(nmpa.sum()), 13, codes._DIGITS)
    made_s = batches["manufactured_on"].cast(pl.Datetime("ms")).dt.epoch("s").to_numpy()[b]
    df = pl.DataFrame(
        {
            "c": c,
            "b": b,
            "p": p,
            "within_cons": within_cons,
            "serial": serial,
            "commissioned_s": made_s + 6 * 3600 + within_batch * 2,
        }
    )
    info = batches.select("b", "batch_id", "lot_number", exp6=pl.col("expiry_on").dt.strftime("%y%m%d"))
    prod = products.select("p", "gtin", "nmpa_drug_code", "code_system")
    df = df.join(info, on="b").join(prod, on="p").sort(["b", "c", "within_cons"])
    return df.with_columns(
        pack_code=pl.when(pl.col("code_system") == "nmpa")
        .then(pl.concat_str([pl.col("nmpa_drug_code"), pl.col("serial")]))
        .otherwise(codes.gs1_hri(pl.col("gtin"), pl.col("exp6"), pl.col("lot_number"), pl.col("serial"))),
        commissioned_at=pl.from_epoch("commissioned_s", time_unit="s").dt.replace_time_zone("UTC"),
    )


def attach_packs(deliveries: pl.DataFrame, consignments: pl.DataFrame, packs: pl.DataFrame) -> pl.DataFrame:
    """Give each delivery a distinct pack from the consignment that served its subdivision."""
    d = deliveries.join(consignments.select("b", "s", "c"), on=["b", "s"])
    d = d.sort(["c", "order"]).with_columns(within_cons=pl.int_range(pl.len()).over("c"))
    return d.join(
        packs.select("c", "within_cons", "pack_code", "serial", "lot_number", "exp6", "gtin", "code_system"),
        on=["c", "within_cons"],
    )


# ============================================================================================
# Planted quality problems (choose the batches once deliveries are known)
# ============================================================================================


@dataclass(frozen=True)
class Plan:
    """What is planted, in simulation indices; ground truth is written from it."""

    signal_p: int
    signal_pt: str
    signal_rr: float
    signal_start_day: int
    defect_b: int
    defect_rr: float
    defect_start_day: int
    cold_b: int
    cold_c: int
    cold_rr: float


def choose_plan(deliveries: pl.DataFrame, products: pl.DataFrame, consignments: pl.DataFrame) -> Plan:
    """Pick the planted product, batch and consignment deterministically from the exposure.

    Batch defect: the Clexarhen (enoxaparin, subcutaneous) batch with the most deliveries among
    those first dispensed Sep 2024..May 2025 — heparin-type contamination gives hypersensitivity
    and injection-site reactions within a day. Cold chain: the Glarvion (insulin glargine,
    2-8 degC) batch released Jun 2024..Mar 2025 with most deliveries; its largest consignment had
    the excursion (heat-damaged insulin loses potency -> lack of efficacy).
    """
    pid = dict(zip(products["name"], products["p"]))
    start_day = lambda iso: int((np.datetime64(iso) - WORLD_START) / np.timedelta64(1, "D"))  # noqa: E731
    per_b = deliveries.group_by("b").agg(pl.len().alias("n"), pl.col("day").min().alias("first"), pl.col("p").first())
    defect = (
        per_b.filter(
            (pl.col("p") == pid["Clexarhen"])
            & pl.col("first").is_between(start_day("2024-09-01"), start_day("2025-05-31"))
        )
        .sort(["n", "b"], descending=[True, False])
        .row(0, named=True)
    )
    cold_b = (
        per_b.filter(pl.col("p") == pid["Glarvion"])
        .join(deliveries.group_by("b").agg(pl.col("day").quantile(0.05).alias("q")), on="b")
        .filter(pl.col("q").is_between(start_day("2024-06-01"), start_day("2025-03-31")))
        .sort(["n", "b"], descending=[True, False])
        .row(0, named=True)["b"]
    )
    cold_c = (
        consignments.filter(pl.col("b") == cold_b)
        .sort(["demand", "c"], descending=[True, False])
        .row(0, named=True)["c"]
    )
    return Plan(
        signal_p=pid["Huaxin Metformin"],
        signal_pt="Hepatotoxicity",
        signal_rr=7.0,
        signal_start_day=start_day("2024-07-01"),
        defect_b=defect["b"],
        defect_rr=10.0,
        defect_start_day=defect["first"],
        cold_b=cold_b,
        cold_c=cold_c,
        cold_rr=20.0,
    )


# ============================================================================================
# Bad deliveries the loader must quarantine
# ============================================================================================


def bad_delivery_count(scale: float) -> int:
    """A few dozen of each kind at scale 1, never fewer than 4 (tests run small worlds)."""
    return max(4, round(30 * scale))


def build_bad_deliveries(
    rng: np.random.Generator,
    packs: pl.DataFrame,
    used_codes: pl.Series,
    batches: pl.DataFrame,
    products: pl.DataFrame,
    patients: pl.DataFrame,
    subregions: pl.DataFrame,
    scale: float,
) -> tuple[pl.DataFrame, dict]:
    """Scans with a wrong GS1 check digit, an unknown GTIN or NMPA code, or an expired pack.

    Returns rows shaped like written deliveries (pack_code already in its scanned form) and
    the per-reason counts for ground truth.
    """
    n = bad_delivery_count(scale)
    n_days = int((WORLD_END - WORLD_START) / np.timedelta64(1, "D")) + 1
    free = packs.filter(~pl.col("pack_code").is_in(used_codes.implode()))
    rows: list[dict] = []
    market_of_p = products["region"].to_numpy()

    def patient_in(market: str) -> tuple[int, int]:
        cand = patients.filter(pl.col("market") == market)
        i = int(rng.integers(0, cand.height))
        return int(cand["pt"][i]), int(cand["s"][i])

    def add(code: str, market: str, day: int, reason: str) -> None:
        pt, s = patient_in(market)
        rows.append({"pt": pt, "s": s, "day": day, "pack_code": code, "reason": reason})

    # 1. wrong check digit: a real pack's GTIN with its last digit changed
    gs1_free = free.filter(pl.col("code_system") == "gs1")
    for i in rng.choice(gs1_free.height, n, replace=False):
        r = gs1_free.row(int(i), named=True)
        wrong = r["gtin"][:13] + str((int(r["gtin"][13]) + 1 + int(rng.integers(0, 8))) % 10)
        add(
            f"(01){wrong}(17){r['exp6']}(10){r['lot_number']}(21){r['serial']}",
            market_of_p[r["p"]],
            int(rng.integers(0, n_days)),
            "bad_check_digit",
        )
    # 2. GTIN with a valid check digit that no product carries (a grey-import or foreign pack)
    known = set(products["gtin"].to_list())
    for _ in range(n):
        while True:
            g = codes.gtin14(str(rng.choice(["4031247", "3400936", "4987123"])), f"{int(rng.integers(0, 100_000)):05d}")
            if g not in known:
                break
        serial = codes.random_strings(rng, 1, 12, codes._ALNUM)[0]
        lot = f"X{int(rng.integers(10_000, 99_999))}"
        market = "JP" if g.startswith("04987") else "EU"
        add(f"(01){g}(17)261130(10){lot}(21){serial}", market, int(rng.integers(0, n_days)), "unknown_gtin")
    # 3. NMPA 20-digit code whose 7-digit drug code is not in products
    known_n = set(products["nmpa_drug_code"].to_list())
    for _ in range(n):
        while True:
            prefix = f"8{int(rng.integers(100_000, 1_000_000))}"
            if prefix not in known_n:
                break
        tail = codes.random_strings(rng, 1, 13, codes._DIGITS)[0]
        add(prefix + tail, "CN", int(rng.integers(0, n_days)), "unknown_nmpa")
    # 4. a real, never-dispensed pack handed out after its batch expired
    exp_day = ((batches["expiry_on"].to_numpy() - WORLD_START) / np.timedelta64(1, "D")).astype(np.int64)
    expired_b = np.flatnonzero((exp_day >= 0) & (exp_day < n_days - 5))
    cand = free.filter(pl.col("b").is_in(expired_b.tolist()))
    for i in rng.choice(cand.height, n, replace=False):
        r = cand.row(int(i), named=True)
        day = int(min(n_days - 1, exp_day[r["b"]] + 1 + rng.integers(0, 60)))
        add(r["pack_code"], market_of_p[r["p"]], day, "expired_at_delivery")
    bad = pl.DataFrame(rows)
    local_s = bad["day"].to_numpy() * SECONDS_PER_DAY + rng.integers(8 * 3600, 20 * 3600, bad.height)
    utc_s = (
        WORLD_START.astype("datetime64[s]").astype(np.int64)
        + local_s
        - subregions["offset_s"].to_numpy()[bad["s"].to_numpy()]
    )
    bad = bad.with_columns(utc_s=pl.Series(utc_s), pharmacy_n=pl.lit(1, pl.Int64))
    counts = {"bad_check_digit": n, "unknown_gtin": n, "unknown_nmpa": n, "expired_at_delivery": n}
    return bad, counts


def scanned_delivery_codes(rng: np.random.Generator, d: pl.DataFrame) -> pl.DataFrame:
    """Pharmacy scanners emit the HRI (55%), the raw element string (30%) or a DL URI (15%)."""
    form = rng.choice(3, size=d.height, p=[0.55, 0.30, 0.15])
    args = (pl.col("gtin"), pl.col("exp6"), pl.col("lot_number"), pl.col("serial"))
    return d.with_columns(form=pl.Series(form)).with_columns(
        scanned=pl.when(pl.col("code_system") == "nmpa")
        .then(pl.col("pack_code"))
        .otherwise(
            codes.scanned_forms(
                pl.col("form"), codes.gs1_hri(*args), codes.gs1_raw(*args), codes.gs1_digital_link(*args)
            )
        )
    )


def delivery_rows(d: pl.DataFrame, patients: pl.DataFrame, subregions: pl.DataFrame) -> pl.DataFrame:
    """Shape deliveries as written: local ISO timestamp with offset, region, country, ids."""
    sub = subregions.select("s", "region", "country", "utc_offset", "offset_s")
    return (
        d.join(patients.select("pt", "patient_ref"), on="pt")
        .join(sub, on="s")
        .with_columns(
            delivered_at=pl.concat_str(
                [
                    pl.from_epoch(pl.col("utc_s") + pl.col("offset_s"), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S"),
                    pl.col("utc_offset"),
                ]
            ),
            pharmacy_id=pl.format(
                "PH-{}-{}", pl.col("region"), pl.col("pharmacy_n").cast(pl.String).str.pad_start(4, "0")
            ),
            quantity=pl.lit(1, pl.Int64),
        )
    )


# ============================================================================================
# Medication-use logs
# ============================================================================================


def build_medication_logs(
    rng: np.random.Generator, d: pl.DataFrame, patients: pl.DataFrame, products: pl.DataFrame
) -> pl.DataFrame:
    """Weekly taken/missed doses for app users, for the weeks one pack lasts.

    Planned doses per week come from the product (7 = daily, 0.5 = every other week); the
    number taken is binomial with the patient's adherence.
    """
    app = patients["app_user"].to_numpy()[d["pt"].to_numpy()]
    d = d.filter(pl.Series(app))
    weeks = products["weeks_supply"].to_numpy()[d["p"].to_numpy()]
    rep = np.repeat(np.arange(d.height), weeks)
    first = np.r_[0, np.cumsum(weeks)[:-1]]
    k = np.arange(len(rep)) - np.repeat(first, weeks)
    day = d["day"].to_numpy()[rep]
    date = WORLD_START + day.astype("timedelta64[D]")
    monday = date - ((date.astype(np.int64) + 3) % 7).astype("timedelta64[D]")  # 1970-01-01 = Thu
    week_start = monday + (7 * k).astype("timedelta64[D]")
    dpw = products["doses_per_week"].to_numpy()[d["p"].to_numpy()][rep]
    planned = (np.floor((k + 1) * dpw) - np.floor(k * dpw)).astype(np.int64)
    adherence = patients["adherence"].to_numpy()[d["pt"].to_numpy()][rep]
    taken = rng.binomial(planned, adherence)
    logged = week_start <= WORLD_END
    out = (
        d.select("patient_ref", "delivery_id")[rep]
        .with_columns(
            week_start=pl.Series(week_start), doses_taken=pl.Series(taken), doses_missed=pl.Series(planned - taken)
        )
        .filter(pl.Series(logged))
    )
    out = out.with_columns(pl.col("week_start").cast(pl.Date)).sort(["week_start", "delivery_id"])
    return out.with_row_index("n").select(
        pl.format("LOG-{}", pl.col("n").add(1).cast(pl.String).str.pad_start(9, "0")).alias("log_id"),
        *[pl.col(c) for c in ("patient_ref", "delivery_id", "week_start", "doses_taken", "doses_missed")],
    )


# ============================================================================================
# Writing
# ============================================================================================


def _clear(out_dir: Path) -> None:
    """Remove the previous world's files (only the folders and files this generator owns)."""
    for sub in OWNED_SUBDIRS:
        if (out_dir / sub).exists():
            shutil.rmtree(out_dir / sub)
        (out_dir / sub).mkdir(parents=True)
    for f in OWNED_FILES:
        (out_dir / f).unlink(missing_ok=True)


def _write_monthly_csv(df: pl.DataFrame, month_col: str, folder: Path, stem: str) -> None:
    for (month,), part in df.partition_by(month_col, as_dict=True, maintain_order=True).items():
        part.drop(month_col).write_csv(folder / f"{stem}_{month}.csv")


def _write_monthly_parquet(df: pl.DataFrame, month_col: str, folder: Path, stem: str) -> None:
    for (month,), part in df.partition_by(month_col, as_dict=True, maintain_order=True).items():
        part.drop(month_col).write_parquet(folder / f"{stem}_{month}.parquet", statistics=False)


def generate_world(
    out_dir: Path, seed: int = 42, scale: float = 1.0, verbatims: bool = False, null: bool = False
) -> dict:
    """Write a synthetic inbox into ``out_dir`` and return its ground truth.

    ``verbatims``: patients write their reactions in their own words (``sample_data.verbatims``; issue 17).

    Same ``seed`` and ``scale`` -> byte-identical files. ``scale`` multiplies patients (hence
    deliveries, packs, cases); the product catalogue and batch calendar do not change.
    ``null``: the same world (same patients, deliveries, packs, background reports: the same
    random draws) with NO planted effect — no product signal, no defective batch, no cold-chain
    excursion — so every alert on it is a false alarm (the background's labelled ADRs,
    indication events and stimulated reporting stay: they are part of any real database).
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    out_dir = Path(out_dir)
    _clear(out_dir)
    rng = np.random.default_rng(seed)

    subregions = _subregion_table()
    manufacturers = build_manufacturers()
    products = build_products(rng)
    batches = build_batches(rng, products)
    patients = build_patients(rng, subregions, scale)
    deliveries = build_deliveries(rng, patients, products, batches, subregions)
    consignments = plan_consignments(rng, deliveries, batches, products, subregions, scale)
    packs = serialise_packs(rng, consignments, batches, products)
    deliveries = attach_packs(deliveries, consignments, packs)
    plan = choose_plan(deliveries, products, consignments)
    if null:  # rate ratio 1 plants nothing; the draws stay the same, so the world does too
        plan = replace(plan, signal_rr=1.0, defect_rr=1.0, cold_rr=1.0)

    # units released = what was shipped; a few batches carry a recall/quarantine flag
    units = consignments.group_by("b").agg(pl.col("units").sum().alias("units_released"))
    batches = batches.join(units, on="b").sort("b")
    status = np.full(batches.height, "none", dtype=object)
    late = np.flatnonzero(batches["released_on"].to_numpy() > np.datetime64("2025-10-15"))
    early = np.flatnonzero(batches["released_on"].to_numpy() < np.datetime64("2023-03-01"))
    status[rng.choice(late, 1)] = "quarantined"
    status[rng.choice(early, 2, replace=False)] = "recalled"
    batches = batches.with_columns(recall_status=pl.Series(status.astype(str)))

    # deliveries as written: good ones (scanned forms) + bad ones, ids in time order
    good = scanned_delivery_codes(rng, deliveries)
    bad, bad_counts = build_bad_deliveries(
        rng, packs, deliveries["pack_code"], batches, products, patients, subregions, scale
    )
    all_d = (
        pl.concat(
            [
                good.select(
                    "pt",
                    "s",
                    "pharmacy_n",
                    "utc_s",
                    pl.col("scanned").alias("pack_code"),
                    pl.col("b"),
                    pl.col("p"),
                    pl.col("c"),
                    pl.col("day"),
                    pl.col("pack_code").alias("serialised_code"),
                ),
                bad.select(
                    "pt",
                    "s",
                    "pharmacy_n",
                    "utc_s",
                    "pack_code",
                    b=pl.lit(None, pl.UInt32),
                    p=pl.lit(None, pl.UInt32),
                    c=pl.lit(None, pl.UInt32),
                    day=pl.col("day"),
                    serialised_code=pl.lit(None, pl.String),
                ),
            ],
            how="vertical_relaxed",
        )
        .sort(["utc_s", "pack_code"])
        .with_row_index("n")
    )
    all_d = all_d.with_columns(
        delivery_id=pl.format("DLV-{}", pl.col("n").add(1).cast(pl.String).str.pad_start(9, "0"))
    )
    written = delivery_rows(all_d, patients, subregions).sort("n")
    good_d = written.filter(pl.col("b").is_not_null())

    # supply chain documents
    epcis_docs, excursion = supply.build_epcis(
        rng, batches, consignments, products, subregions, plan.cold_c, plant_excursion=not null
    )

    # medication logs before the cases: a null world then differs from its planted twin in cases only
    medlogs = build_medication_logs(rng, good_d, patients, products)

    # adverse-event case versions
    case_out = case_gen.build_cases(rng, good_d, patients, products, batches, consignments, subregions, plan, scale)

    # ---------------------------------------------------------------- write files
    manufacturers.write_csv(out_dir / "reference" / "manufacturers.csv")
    products.select(PRODUCT_COLUMNS).write_csv(out_dir / "reference" / "products.csv")
    batches.select(
        "batch_id",
        "product_id",
        "lot_number",
        "site",
        "manufactured_on",
        "expiry_on",
        "released_on",
        "units_released",
        "recall_status",
    ).write_csv(out_dir / "reference" / "batches.csv")
    pack_rows = packs.select(
        "pack_code",
        "code_system",
        "batch_id",
        "serial",
        "commissioned_at",
        month=pl.col("commissioned_at").dt.strftime("%Y-%m"),
    )
    _write_monthly_parquet(pack_rows, "month", out_dir / "packs", "packs")
    _write_monthly_csv(
        written.select(
            "delivery_id",
            "delivered_at",
            "pack_code",
            "patient_ref",
            "pharmacy_id",
            "region",
            "country",
            "quantity",
            month=pl.col("delivered_at").str.slice(0, 7),
        ),
        "month",
        out_dir / "deliveries",
        "deliveries",
    )
    _write_monthly_parquet(
        medlogs.with_columns(month=pl.col("week_start").dt.strftime("%Y-%m")),
        "month",
        out_dir / "medication_logs",
        "medication_log",
    )
    for month, doc in epcis_docs.items():
        (out_dir / "supply" / f"epcis_{month}.jsonld").write_text(
            json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    case_out.lines_by_month = write_patient_verbatims(out_dir, case_out.lines_by_month, seed, verbatims)
    for month, lines in case_out.lines_by_month.items():
        (out_dir / "cases" / f"cases_{month}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    case_out.case_batches.write_parquet(out_dir / "ground_truth_case_batches.parquet", statistics=False)
    case_out.background_rates.write_parquet(out_dir / "ground_truth_background_rates.parquet", statistics=False)

    truth = ground_truth(
        seed,
        scale,
        null,
        plan,
        excursion,
        batches,
        products,
        consignments,
        subregions,
        good_d,
        case_out,
        bad_counts,
        manufacturers,
        packs,
        written,
        patients,
    )
    (out_dir / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth


def null_world(out_dir: Path, seed: int = 42, scale: float = 1.0) -> Path:
    """Write the null world (:func:`generate_world` with ``null=True``) and return its folder:
    the entry point for scripts counting false alarms of the whole pipeline."""
    generate_world(Path(out_dir), seed=seed, scale=scale, null=True)
    return Path(out_dir)


def ground_truth(
    seed: int,
    scale: float,
    null: bool,
    plan: Plan,
    excursion: dict,
    batches: pl.DataFrame,
    products: pl.DataFrame,
    consignments: pl.DataFrame,
    subregions: pl.DataFrame,
    good_d: pl.DataFrame,
    case_out,
    bad_counts: dict,
    manufacturers: pl.DataFrame,
    packs: pl.DataFrame,
    written: pl.DataFrame,
    patients: pl.DataFrame,
) -> dict:
    """The planted facts in the contract's shape, plus the evidence sizes behind each, and the
    background effects (``background``: known ADRs are ``known_adrs``). A null world plants
    nothing: ``signals`` is empty and ``null_world`` true."""
    pid = products["product_id"].to_list()
    bat = batches.row(plan.defect_b, named=True)
    cold = batches.row(plan.cold_b, named=True)
    cons = consignments.row(plan.cold_c, named=True)
    day_iso = lambda d: str(WORLD_START + np.timedelta64(int(d), "D"))  # noqa: E731
    n_cold = good_d.filter(pl.col("c") == plan.cold_c).height
    n_defect = good_d.filter(pl.col("b") == plan.defect_b).height
    obs = case_out.observed
    signals: list[dict] = []
    if not null:
        signals = [
            {
                "kind": "product",
                "product_id": pid[plan.signal_p],
                "pt": plan.signal_pt,
                "rate_ratio": plan.signal_rr,
                "starts_on": day_iso(plan.signal_start_day),
                "observed_cases": obs["product"],
                "expected_background_cases": obs["product_expected"],
            },
            {
                "kind": "batch_defect",
                "product_id": bat["product_id"],
                "batch_id": bat["batch_id"],
                "lot_number": bat["lot_number"],
                "pts": ["Hypersensitivity", "Injection site reaction"],
                "rate_ratio": plan.defect_rr,
                "starts_on": day_iso(plan.defect_start_day),
                "starts_on_is": "first delivery of the batch",
                "onset_days_max": 1,
                "deliveries": n_defect,
                "observed_cases": obs["batch_defect"],
                "expected_background_cases": obs["batch_defect_expected"],
            },
            {
                "kind": "cold_chain",
                "product_id": cold["product_id"],
                "batch_id": cold["batch_id"],
                "lot_number": cold["lot_number"],
                "pts": ["Drug ineffective"],
                "rate_ratio": plan.cold_rr,
                "affected": "consignment",
                "consignment_id": cons["consignment_id"],
                "region": subregions["region"][cons["s"]],
                "excursion_at": excursion["excursion_at"],
                "max_temp_c": excursion["max_temp_c"],
                "excursion_event_id": excursion["event_id"],
                "starts_on": excursion["excursion_at"][:10],
                "deliveries": n_cold,
                "observed_cases": obs["cold_chain"],
                "expected_background_cases": obs["cold_chain_expected"],
            },
        ]
    background = {
        **case_out.background,
        "rates_file": "ground_truth_background_rates.parquet",
        "weekly_pattern": {
            "deliveries_moved_to_monday": {"saturday": WEEKEND_SHIFT[5], "sunday": WEEKEND_SHIFT[6]},
        },
    }
    return {
        "seed": seed,
        "scale": scale,
        "null_world": null,
        "world_start": str(WORLD_START),
        "world_end": str(WORLD_END),
        "signals": signals,
        "negative_controls": case_out.negative_controls,
        "known_adrs": case_out.known_adrs,
        "background": background,
        "duplicates": case_out.duplicates,
        "bad_inputs": {"deliveries": bad_counts, "cases": case_out.bad_counts},
        "counts": {
            "manufacturers": manufacturers.height,
            "products": products.height,
            "batches": batches.height,
            "packs": packs.height,
            "deliveries": written.height,
            "deliveries_valid": good_d.height,
            "patients": int(written["patient_ref"].n_unique()),
            "case_versions": case_out.n_versions,
            "cases": case_out.n_cases,
        },
    }
