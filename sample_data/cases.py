"""Adverse-event case reports generated from deliveries, with planted signals.

Why from deliveries: each report then has a true pack, batch and consignment behind it, so the
warehouse's report-to-batch linkage and every signal method can be scored against the truth.

Reporting model, per delivery (a Bernoulli draw per source of reports, all vectorised):

* background: a case with probability ``BACKGROUND_CASE_RATE[market] x s_p x season(day)`` and
  1-5 reactions drawn from the product's own PT distribution ``shares x lambda_p / s_p``, where
  ``lambda_pj ~ Gamma(HETEROGENEITY_SHAPE, 1 / HETEROGENEITY_SHAPE)`` (mean 1) is the
  drug x event heterogeneity real spontaneous-report databases show (DuMouchel 1999 fits a
  gamma mixture to it; a homogeneous background leaves that prior at a point mass) and
  ``s_p = sum_j shares_j lambda_pj``.  The planted pairs and the negative-control PTs keep
  ``lambda = 1`` so their base rate stays known;
* labelled ADRs: each product's ``known_adrs`` add reports at their own rate;
* indication-related events (confounding by indication, :data:`INDICATION_EVENTS`): the
  disease a product treats is reported with it, not caused by it;
* stimulated reporting (:data:`STIMULATED_REPORTING`): after a publicised safety communication
  reports of its event for its product surge for a few months, many describing older events;
* seasonality: background reporting peaks in winter (``SEASONAL_AMPLITUDE``);
* reporting delays with a long right tail (``LATE_REPORT_SHARE`` of reports arrive months
  later), and reports from health professionals arrive on working days only;
* planted: the product signal, the batch defect and the cold-chain consignment add reports at
  ``(rate_ratio - 1) x`` the base rate of their PTs, so the total is ``rate_ratio x`` base
  (a null world plants rate ratio 1: nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from sample_data.codes import typo
from sample_data.vocabulary import (
    BACKGROUND_SHARE_OVERRIDES,
    PREFERRED_TERMS,
    PRODUCTS,
    ROUTE_SPECIFIC_PTS,
    UNKNOWN_LOT_SPELLINGS,
)

BACKGROUND_CASE_RATE = {"CN": 0.090, "EU": 0.100, "US": 0.110, "JP": 0.090}
MAX_EXTRA_REACTIONS = 4
EXTRA_REACTIONS_MEAN = 0.5

#: shape k of the gamma drug x event heterogeneity (mean 1, coefficient of variation 1/sqrt(k))
HETEROGENEITY_SHAPE = 8.0
#: background reporting is (1 + A cos(2 pi (day of year - 15) / 365)) x average: winter peak
SEASONAL_AMPLITUDE = 0.15
#: share of reports of each source that arrive late, and the late delay (lognormal median, sigma):
#: a long right tail (follow-up of hospital cases, literature, retrospective reporting)
LATE_REPORT_SHARE = {0: 0.03, 1: 0.10, 2: 0.06}
LATE_DELAY_MEDIAN_DAYS = 60.0
LATE_DELAY_SIGMA = 1.0

#: confounding by indication: ATC prefix -> (PT of the treated disease, reports per 1000
#: deliveries, median days from delivery to onset).  None of them is a negative-control PT.
INDICATION_EVENTS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "A10": (("Blood glucose increased", 2.0, 30),),  # diabetes
    "C08": (("Blood pressure increased", 1.5, 30),),  # hypertension
    "C09": (("Blood pressure increased", 1.5, 30),),
    "C10": (("Myocardial infarction", 0.4, 60),),  # cardiovascular disease
    "B01": (("Deep vein thrombosis", 1.0, 10), ("Pulmonary embolism", 0.5, 10)),  # thrombosis
    "B03": (("Anaemia", 2.0, 30),),  # renal anaemia
    "J01": (("Pneumonia", 1.5, 3), ("Bronchitis", 1.0, 3)),  # the infection treated
    "N06": (("Depression", 2.0, 20), ("Suicidal ideation", 0.3, 20)),
    "N03": (("Seizure", 0.8, 30),),
    "L04": (("Joint swelling", 1.5, 30),),  # rheumatoid arthritis
    "M01": (("Musculoskeletal pain", 1.5, 20),),
    "N02": (("Headache", 1.0, 1),),
    "A02": (("Gastrooesophageal reflux disease", 1.5, 20),),
    "J07BB": (("Influenza like illness", 1.5, 5),),  # flu-season illness after flu vaccination
    "J07BK": (("Herpes zoster", 0.5, 60),),
}

#: stimulated reporting after a publicised safety communication (notoriety bias, the "Weber
#: effect"): (product name, PT, publicised on, extra reports per 1000 deliveries at the peak,
#: decay days).  Deliveries from ``STIMULATED_LOOKBACK_DAYS`` before the date on yield extra
#: reports, all received after it (many describe older events), decaying exponentially both
#: ways (older events are less often remembered, the news fades).
STIMULATED_REPORTING: tuple[tuple[str, str, str, float, float], ...] = (
    ("Leweixin", "Tendonitis", "2025-03-10", 30.0, 45.0),  # fluoroquinolone tendon warnings
    ("Corriglu", "Suicidal ideation", "2025-07-07", 25.0, 40.0),  # a GLP-1 agonist review in the news
)
STIMULATED_LOOKBACK_DAYS = 180

PT_NAMES = [t[0] for t in PREFERRED_TERMS]
PT_SOC = [t[1] for t in PREFERRED_TERMS]
PT_SERIOUS = np.array([t[2] for t in PREFERRED_TERMS])
PT_INDEX = {name: i for i, name in enumerate(PT_NAMES)}

SERIOUSNESS = ["hospitalisation", "other_medically_important", "life_threatening", "disability", "death"]
SERIOUSNESS_P = [0.55, 0.30, 0.08, 0.03, 0.04]
OUTCOMES = ["recovered", "recovering", "not_recovered", "recovered_with_sequelae", "unknown"]
OUTCOMES_P = [0.35, 0.30, 0.15, 0.03, 0.17]

#: (PT, product names excluded) candidates for negative controls, in order of preference
NEGATIVE_CONTROL_PTS = [
    "Arthralgia",
    "Back pain",
    "Pruritus",
    "Anxiety",
    "Fatigue",
    "Insomnia",
    "Palpitations",
    "Alopecia",
    "Cough",
    "Myalgia",
    "Pain in extremity",
]


def background_shares() -> np.ndarray:
    """Shared background PT distribution: Zipf-like over the vocabulary's frequency order.

    Route-specific terms get 0; a few terms get a fixed share so the planted signals have a
    known base rate (``BACKGROUND_SHARE_OVERRIDES``).
    """
    rank = np.arange(len(PT_NAMES))
    w = 1.0 / (rank + 6.0) ** 1.15
    w[[PT_INDEX[t] for t in ROUTE_SPECIFIC_PTS]] = 0.0
    fixed = np.zeros(len(w), dtype=bool)
    fixed[[PT_INDEX[t] for t in BACKGROUND_SHARE_OVERRIDES]] = True
    w[fixed] = 0.0
    w *= (1.0 - sum(BACKGROUND_SHARE_OVERRIDES.values())) / w.sum()
    for t, share in BACKGROUND_SHARE_OVERRIDES.items():
        w[PT_INDEX[t]] = share
    return w


def mean_background_reactions() -> float:
    """E[1 + min(Poisson(0.5), 4)]: reactions per background case."""
    k = np.arange(MAX_EXTRA_REACTIONS + 1)
    from math import exp, factorial

    pk = np.array([exp(-EXTRA_REACTIONS_MEAN) * EXTRA_REACTIONS_MEAN**i / factorial(i) for i in k])
    pk[-1] += 1 - pk.sum()
    return float(1 + (k * pk).sum())


def season_factor(day: np.ndarray) -> np.ndarray:
    """Multiplier of background reporting on world day ``day`` (0 = 2024-01-01): winter peak."""
    doy = np.asarray(day) % 365.25
    return 1.0 + SEASONAL_AMPLITUDE * np.cos(2 * np.pi * (doy - 15.0) / 365.25)


def drug_event_heterogeneity(rng: np.random.Generator, n_products: int, fixed: list[tuple[int, int]]) -> np.ndarray:
    """products x PTs gamma multipliers (mean 1) of the background; ``fixed`` pairs and the
    negative-control PTs get exactly 1 (their base rate is what the ground truth states)."""
    lam = rng.gamma(HETEROGENEITY_SHAPE, 1.0 / HETEROGENEITY_SHAPE, (n_products, len(PT_NAMES)))
    lam[:, [PT_INDEX[t] for t in NEGATIVE_CONTROL_PTS]] = 1.0
    for p, j in fixed:
        lam[p, j] = 1.0
    return lam


def indication_events(atc_code: str) -> tuple[tuple[str, float, float], ...]:
    """The indication-related events of a product (longest matching ATC prefix)."""
    best = max((k for k in INDICATION_EVENTS if atc_code.startswith(k)), key=len, default=None)
    return INDICATION_EVENTS[best] if best else ()


class BaseRate:
    """Background reports of each PT per delivery: product x PT table times the season.

    Kept as a (product x PT) table plus a product index and a season factor per delivery: a
    dense deliveries x PTs matrix would need gigabytes at scale 10.
    """

    def __init__(self, product: np.ndarray, table: np.ndarray, season: np.ndarray):
        self.table = table
        self.product = np.asarray(product)
        self.season = np.asarray(season)

    def of(self, rows: np.ndarray, pts: list[int]) -> np.ndarray:
        """rows x pts array of per-delivery base rates."""
        rows = np.asarray(rows)
        return self.table[self.product[rows][:, None], np.asarray(pts)[None, :]] * self.season[rows][:, None]


@dataclass
class CaseOutput:
    lines_by_month: dict[str, list[str]]
    case_batches: pl.DataFrame
    observed: dict
    negative_controls: list[dict]
    known_adrs: list[dict]
    duplicates: list[list[str]]
    bad_counts: dict
    n_versions: int
    n_cases: int
    background: dict
    background_rates: pl.DataFrame


# --------------------------------------------------------------------------------------------
# Reactions per delivery
# --------------------------------------------------------------------------------------------


def draw_reactions(
    rng: np.random.Generator, d: pl.DataFrame, products: pl.DataFrame, plan, base_rate: BaseRate, lam: np.ndarray
) -> pl.DataFrame:
    """All reaction events: (delivery row, PT index, onset days after delivery, cause, not_before).

    ``base_rate`` is a :class:`BaseRate`: the per-delivery background rate of each PT;
    ``lam`` the products x PTs heterogeneity behind it. Causes: 0 background, 1 labelled ADR,
    2 product signal, 3 batch defect, 4 cold chain, 5 stimulated reporting, 6 indication.
    ``not_before``: the world day before which the report cannot be received (stimulated
    reports come after the publicity), -1 otherwise.
    """
    n = d.height
    market = d["market"].to_numpy()
    p = d["p"].to_numpy()
    day = d["day"].to_numpy()
    shares = background_shares()
    s_p = (shares[None, :] * lam).sum(axis=1)
    rate = np.array([BACKGROUND_CASE_RATE[m] for m in market]) * s_p[p] * base_rate.season
    parts = []

    has = np.flatnonzero(rng.random(n) < rate)
    k = 1 + np.minimum(rng.poisson(EXTRA_REACTIONS_MEAN, len(has)), MAX_EXTRA_REACTIONS)
    rows = np.repeat(has, k)
    pts = np.empty(len(rows), dtype=np.int64)
    for pi in range(len(PRODUCTS)):  # each product draws from its own PT distribution
        sel = np.flatnonzero(p[rows] == pi)
        pts[sel] = rng.choice(len(shares), len(sel), p=shares * lam[pi] / s_p[pi])
    parts.append((rows, pts, np.minimum(150, np.floor(rng.lognormal(np.log(6), 1.1, len(rows)))), 0))

    for pi, prod in enumerate(PRODUCTS):
        m = np.flatnonzero(p == pi)
        for pt, per_1000, tto in prod.known_adrs:
            hit = m[rng.random(len(m)) < per_1000 / 1000]
            onset = np.floor(rng.lognormal(np.log(tto + 0.5), 0.5, len(hit)))
            parts.append((hit, np.full(len(hit), PT_INDEX[pt]), onset, 1))
        for pt, per_1000, tto in indication_events(prod.atc_code):
            hit = m[rng.random(len(m)) < per_1000 / 1000]
            onset = np.floor(rng.lognormal(np.log(tto + 0.5), 1.0, len(hit)))
            parts.append((hit, np.full(len(hit), PT_INDEX[pt]), onset, 6))

    not_before = []
    for name, pt, on, peak, decay in STIMULATED_REPORTING:
        pi = next(i for i, x in enumerate(PRODUCTS) if x.name == name)
        t0 = int((np.datetime64(on) - np.datetime64("2024-01-01")) / np.timedelta64(1, "D"))
        m = np.flatnonzero((p == pi) & (day >= t0 - STIMULATED_LOOKBACK_DAYS))
        weight = np.where(day[m] < t0, np.exp(-(t0 - day[m]) / 60.0), np.exp(-(day[m] - t0) / decay))
        hit = m[rng.random(len(m)) < peak / 1000 * weight]
        onset = np.floor(rng.lognormal(np.log(5.0), 1.0, len(hit)))
        parts.append((hit, np.full(len(hit), PT_INDEX[pt]), onset, 5))
        not_before.append((len(parts) - 1, t0 + np.floor(rng.exponential(decay, len(hit)))))

    def planted(mask: np.ndarray, pt: str, rr: float, onset: np.ndarray | None, cause: int, extra_base: float = 0.0):
        idx = np.flatnonzero(mask)
        extra = (rr - 1.0) * (base_rate.of(idx, [PT_INDEX[pt]])[:, 0] + extra_base)
        hit = idx[rng.random(len(idx)) < extra]
        if onset is None:
            on = rng.integers(0, 2, len(hit)).astype(float)  # 0-1 day: batch defect
        else:
            on = np.floor(rng.lognormal(np.log(onset[0]), onset[1], len(hit)))
        parts.append((hit, np.full(len(hit), PT_INDEX[pt]), on, cause))

    planted(
        (p == plan.signal_p) & (day >= plan.signal_start_day), plan.signal_pt, plan.signal_rr, np.array([40.0, 0.5]), 2
    )
    defect = d["b"].to_numpy() == plan.defect_b
    planted(defect, "Hypersensitivity", plan.defect_rr, None, 3)
    isr = {t: r for t, r, _ in PRODUCTS[int(d.filter(pl.col("b") == plan.defect_b)["p"][0])].known_adrs}.get(
        "Injection site reaction", 0.0
    ) / 1000
    planted(defect, "Injection site reaction", plan.defect_rr, None, 3, extra_base=isr)
    planted(d["c"].to_numpy() == plan.cold_c, "Drug ineffective", plan.cold_rr, np.array([14.0, 0.6]), 4)

    floor = [np.full(len(x[0]), -1.0) for x in parts]
    for i, nb in not_before:
        floor[i] = nb
    ev = pl.DataFrame(
        {
            "row": np.concatenate([x[0] for x in parts]).astype(np.int64),
            "pt_i": np.concatenate([x[1] for x in parts]).astype(np.int64),
            "onset": np.concatenate([x[2] for x in parts]).astype(np.int64),
            "cause": np.concatenate([np.full(len(x[0]), x[3]) for x in parts]).astype(np.int64),
            "not_before": np.concatenate(floor).astype(np.int64),
        }
    )
    # a PT appears once per case: keep the earliest onset (and the planted cause if any); a
    # stimulated report is received after the publicity whichever of its reactions is kept
    planted_first = pl.col("cause").is_in([2, 3, 4]).not_()
    return (
        ev.with_columns(pl.col("not_before").max().over("row"))
        .sort([pl.col("row"), pl.col("pt_i"), pl.col("onset"), planted_first, pl.col("cause")])
        .unique(["row", "pt_i"], keep="first", maintain_order=True)
    )


# --------------------------------------------------------------------------------------------
# How reporters write products, lots and codes
# --------------------------------------------------------------------------------------------


def reported_product_name(u: float, name: str, ingredient: str, strength: str) -> str:
    """Brand in varying case, sometimes with strength, sometimes the ingredient (INN)."""
    if u < 0.35:
        return name
    if u < 0.50:
        return name.lower()
    if u < 0.58:
        return name.upper()
    if u < 0.78:
        return f"{name} {strength}"
    if u < 0.93:
        return ingredient
    return f"{ingredient.title()} {strength}"


def typed_lot(rng: np.random.Generator, lot: str, missing_p: float) -> str | None:
    """A lot number as typed into a form: clean, lower case, prefixed, spaced, mistyped, junk."""
    u = rng.random()
    if u < missing_p:
        return None
    u = (u - missing_p) / (1 - missing_p)
    if u < 0.40:
        return lot
    if u < 0.53:
        return lot.lower()
    if u < 0.62:
        return f"LOT {lot}"
    if u < 0.68:
        return f"LOT#{lot}"
    if u < 0.73:
        return f"L:{lot}"
    if u < 0.78:
        cut = max(1, len(lot) // 2)
        return f"{lot[:cut]} {lot[cut:]}"
    if u < 0.87:
        return typo(rng, lot)
    return str(UNKNOWN_LOT_SPELLINGS[int(rng.integers(0, len(UNKNOWN_LOT_SPELLINGS)))])


def app_scan_form(rng: np.random.Generator, r: dict) -> str:
    """Patient-app scan of the pack: HRI, raw with <GS>, Digital Link URI, or NMPA 20 digits."""
    if r["code_system"] == "nmpa":
        return r["serialised_code"]
    g, e, lot, s = r["gtin"], r["exp6"], r["lot_number"], r["serial"]
    u = rng.random()
    if u < 0.4:
        return f"(01){g}(17){e}(10){lot}(21){s}"
    if u < 0.65:
        return f"01{g}17{e}10{lot}<GS>21{s}"
    return f"https://id.gs1.org/01/{g}/10/{lot}/21/{s}?17={e}"


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------

_ISO_DAYS = [str(x) for x in np.arange(np.datetime64("2024-01-01"), np.datetime64("2026-12-31"))]


def _iso(day: int) -> str:
    """ISO date of a world day (0 = 2024-01-01); a lookup, as it runs once per date field."""
    return _ISO_DAYS[int(day)]


def build_cases(
    rng: np.random.Generator,
    d: pl.DataFrame,
    patients: pl.DataFrame,
    products: pl.DataFrame,
    batches: pl.DataFrame,
    consignments: pl.DataFrame,
    subregions: pl.DataFrame,
    plan,
    scale: float,
) -> CaseOutput:
    """Case versions (JSON lines by month), truth of case->batch, counts behind each signal."""
    n_days = int((np.datetime64("2025-12-31") - np.datetime64("2024-01-01")) / np.timedelta64(1, "D")) + 1
    d = d.join(subregions.select("s", "market"), on="s").sort("n")
    hri = d["serialised_code"].str.extract_groups(r"^\(01\)(\d{14})\(17\)(\d{6})\(10\)([^()]*)\(21\)(.*)$")
    d = d.with_columns(
        gtin=hri.struct.field("1"),
        exp6=hri.struct.field("2"),
        lot_number=hri.struct.field("3"),
        serial=hri.struct.field("4"),
    )
    lots = batches.select("b", lot_from_batch="lot_number", batch_id="batch_id")
    d = d.join(lots, on="b").with_columns(
        lot_number=pl.coalesce("lot_number", "lot_from_batch"),
        code_system=pl.when(pl.col("gtin").is_null()).then(pl.lit("nmpa")).otherwise(pl.lit("gs1")),
    )
    # from here on ``n`` is the row position of a good delivery (bad rows left gaps in it)
    d = d.sort("n").drop("n").with_row_index("n").with_columns(pl.col("n").cast(pl.Int64))

    shares = background_shares()
    mean_k = mean_background_reactions()
    defect_p = int(d.filter(pl.col("b") == plan.defect_b)["p"][0])
    cold_p = int(d.filter(pl.col("c") == plan.cold_c)["p"][0])
    fixed = [
        (plan.signal_p, PT_INDEX[plan.signal_pt]),
        (defect_p, PT_INDEX["Hypersensitivity"]),
        (defect_p, PT_INDEX["Injection site reaction"]),
        (cold_p, PT_INDEX["Drug ineffective"]),
    ]
    lam = drug_event_heterogeneity(rng, len(PRODUCTS), fixed)
    case_rate = np.array([BACKGROUND_CASE_RATE[r] for r in products.sort("p")["region"].to_list()])
    base_rate = BaseRate(
        d["p"].to_numpy(), case_rate[:, None] * mean_k * shares[None, :] * lam, season_factor(d["day"])
    )
    ev = draw_reactions(rng, d, products, plan, base_rate, lam)

    # ---- one case per delivery with at least one reaction
    day = d["day"].to_numpy()
    ev = ev.with_columns(onset_day=pl.Series(ev["onset"].to_numpy() + day[ev["row"].to_numpy()]))
    cases = (
        ev.group_by("row")
        .agg(
            pl.col("pt_i"),
            pl.col("onset_day"),
            pl.col("cause"),
            last=pl.col("onset_day").max(),
            not_before=pl.col("not_before").max(),
        )
        .sort("row")
    )
    rows = cases["row"].to_numpy()
    pt_of = d["pt"].to_numpy()[rows]
    app = patients["app_user"].to_numpy()[pt_of]
    u = rng.random(len(rows))
    source = np.where(
        app, np.where(u < 0.75, 0, np.where(u < 0.9, 1, 2)), np.where(u < 0.65, 1, 2)
    )  # 0 app, 1 hcp, 2 pharmacist
    delay = np.select(
        [source == 0, source == 1],
        [rng.geometric(0.35, len(rows)) - 1, np.round(rng.lognormal(np.log(12), 0.8, len(rows)))],
        np.round(rng.lognormal(np.log(5), 0.7, len(rows))),
    ).astype(np.int64)
    late = rng.random(len(rows)) < np.array([LATE_REPORT_SHARE[k] for k in range(3)])[source]
    late_delay = np.round(rng.lognormal(np.log(LATE_DELAY_MEDIAN_DAYS), LATE_DELAY_SIGMA, len(rows))).astype(np.int64)
    delay = np.where(late, np.maximum(delay, late_delay), delay)
    received = np.maximum(cases["last"].to_numpy() + delay, cases["not_before"].to_numpy())
    # health professionals and pharmacists report on working days (day 0, 2024-01-01, is a Monday)
    weekday = received % 7
    received = received + np.where(source == 0, 0, np.select([weekday == 5, weekday == 6], [2, 1], 0))
    keep = received < n_days
    cases = cases.filter(pl.Series(keep)).with_columns(
        received=pl.Series(received[keep]), source=pl.Series(source[keep])
    )

    # ---- concomitant: the patient's other chronic product dispensed within 45 days before
    conc = _concomitants(d, cases)

    prod = products.to_dicts()
    # only the deliveries behind a case (as suspect or concomitant) become Python dicts
    needed = set(cases["row"].to_list()) | set(conc.values())
    drow = {
        r["n"]: r
        for r in d.filter(pl.col("n").is_in(sorted(needed)))
        .select(
            "n",
            "pt",
            "p",
            "b",
            "c",
            "day",
            "delivered_at",
            "delivery_id",
            "patient_ref",
            "country",
            "code_system",
            "serialised_code",
            "gtin",
            "exp6",
            "lot_number",
            "serial",
            "batch_id",
        )
        .iter_rows(named=True)
    }
    pats = patients.select("age_years", "sex").to_dicts()
    source_names = ["patient_app", "hcp", "pharmacist"]

    records: list[dict] = []  # one per case (before versions), internal fields prefixed _
    for case in cases.iter_rows(named=True):
        r = drow[case["row"]]
        records.append(
            _case_record(rng, r, prod[r["p"]], pats[r["pt"]], case, source_names[case["source"]], conc.get(case["row"]))
        )

    _add_concomitants(rng, records, drow, prod)
    duplicates = _make_duplicates(rng, records, drow, prod, n_days)
    bad = _make_bad(rng, records, scale)
    all_cases = records + [x for x, _ in duplicates] + [x for x, _ in bad]
    _assign_case_ids(all_cases)
    versions = _follow_ups(rng, records + [x for x, _ in duplicates], n_days)

    lines: dict[str, list[tuple]] = {}
    truth_rows = []
    for rec in records + [x for x, _ in duplicates] + versions:
        obj = _public(rec)
        month = rec["received_on"][:7]
        lines.setdefault(month, []).append(
            (rec["received_on"], rec["case_id"], rec["version"], json.dumps(obj, ensure_ascii=False))
        )
        for i, (bid, pid) in enumerate(rec["_truth"]):
            truth_rows.append((rec["case_id"], i, rec["version"], bid, pid))
    bad_counts = {"bad_json": 0, "missing_reactions": 0, "bad_date": 0}
    for rec, kind in bad:
        bad_counts[kind] += 1
        text = json.dumps(_public(rec), ensure_ascii=False)
        if kind == "bad_json":
            text = text[: int(len(text) * 0.6)]  # truncated upload
        lines.setdefault(rec["_month"], []).append((rec["received_on"], rec["case_id"], rec["version"], text))
    lines_by_month = {m: [x[3] for x in sorted(v)] for m, v in sorted(lines.items())}
    case_batches = pl.DataFrame(
        truth_rows,
        schema={
            "case_id": pl.String,
            "drug_index": pl.Int64,
            "version": pl.Int64,
            "batch_id": pl.String,
            "product_id": pl.String,
        },
        orient="row",
    ).sort(["case_id", "version", "drug_index"])

    observed = _observed(d, cases, plan, base_rate)
    negative = _negative_controls(d, cases, products, plan, base_rate, scale)
    known = [
        {
            "product_id": prod[i]["product_id"],
            "pt": pt,
            "soc": PT_SOC[PT_INDEX[pt]],
            "extra_reports_per_1000_deliveries": rate,
        }
        for i, p in enumerate(PRODUCTS)
        for pt, rate, _ in p.known_adrs
    ]
    n_versions = len(records) + len(duplicates) + len(versions)
    background = _background_truth(cases, prod)
    # every product x PT background rate (heterogeneity included; season-averaged), so an
    # evaluation can tell a rule firing on an elevated background from noise
    j_all = np.arange(len(PT_NAMES))
    background_rates = pl.DataFrame(
        {
            "product_id": np.repeat([x["product_id"] for x in prod], len(PT_NAMES)),
            "pt": np.tile(PT_NAMES, len(prod)),
            "background_multiplier": lam[:, j_all].ravel(),
            "background_reports_per_1000_deliveries": 1000 * base_rate.table.ravel(),
        }
    ).filter(pl.col("background_reports_per_1000_deliveries") > 0)
    return CaseOutput(
        lines_by_month,
        case_batches,
        observed,
        negative,
        known,
        [[a["case_id"], b["case_id"]] for b, a in duplicates],
        bad_counts,
        n_versions,
        len(records) + len(duplicates),
        background,
        background_rates,
    )


def _background_truth(cases: pl.DataFrame, prod: list[dict]) -> dict:
    """The background effects the world contains, so evaluation can tell expected signals
    (labelled ADRs, indications, stimulated reporting) from unexpected ones."""
    by_cause = cases.select("cause", "pt_i", "row").explode("cause", "pt_i")
    stimulated = []
    for name, pt, on, peak, decay in STIMULATED_REPORTING:
        pi = next(i for i, x in enumerate(PRODUCTS) if x.name == name)
        t0 = np.datetime64(on)
        stimulated.append(
            {
                "product_id": prod[pi]["product_id"],
                "pt": pt,
                "publicised_on": on,
                "window_end": str(t0 + np.timedelta64(int(round(3 * decay)), "D")),
                "peak_extra_reports_per_1000_deliveries": peak,
                "decay_days": decay,
                "lookback_days": STIMULATED_LOOKBACK_DAYS,
                "stimulated_cases": int(
                    by_cause.filter((pl.col("cause") == 5) & (pl.col("pt_i") == PT_INDEX[pt]))["row"].n_unique()
                ),
            }
        )
    return {
        "drug_event_heterogeneity": {
            "distribution": "gamma",
            "shape": HETEROGENEITY_SHAPE,
            "mean": 1.0,
            "fixed_at_1": "the planted product x PT pairs and the negative-control PTs",
        },
        "indication_events": [
            {
                "product_id": prod[i]["product_id"],
                "pt": pt,
                "soc": PT_SOC[PT_INDEX[pt]],
                "extra_reports_per_1000_deliveries": rate,
            }
            for i, p in enumerate(PRODUCTS)
            for pt, rate, _ in indication_events(p.atc_code)
        ],
        "stimulated_reporting": stimulated,
        "seasonality": {"amplitude": SEASONAL_AMPLITUDE, "peak_day_of_year": 15},
        "reporting_delay": {
            "late_share_by_source": {
                name: LATE_REPORT_SHARE[k] for k, name in enumerate(["patient_app", "hcp", "pharmacist"])
            },
            "late_delay_lognormal_median_days": LATE_DELAY_MEDIAN_DAYS,
            "late_delay_lognormal_sigma": LATE_DELAY_SIGMA,
            "professional_reports_on_working_days": True,
        },
    }


def _concomitants(d: pl.DataFrame, cases: pl.DataFrame) -> dict[int, int]:
    """Case row -> delivery row of the patient's other product taken at the time (asof join)."""
    sus = d.select("n", "pt", "p", "day").filter(pl.col("n").is_in(cases["row"].implode()))
    pairs = d.select("pt", "p").unique()
    other = sus.join(pairs, on="pt", suffix="_other").filter(pl.col("p") != pl.col("p_other"))
    if other.is_empty():
        return {}
    hist = d.select(pt="pt", p_other="p", day_other="day", n_other="n").sort("day_other")
    got = other.sort("day").join_asof(
        hist, left_on="day", right_on="day_other", by=["pt", "p_other"], strategy="backward", check_sortedness=False
    )
    got = got.filter(pl.col("n_other").is_not_null() & (pl.col("day") - pl.col("day_other") <= 45))
    got = got.sort(["n", "p_other"]).unique("n", keep="first", maintain_order=True)
    return dict(zip(got["n"].to_list(), got["n_other"].to_list()))


def _case_record(rng, r: dict, pr: dict, pat: dict, case: dict, source: str, conc_row) -> dict:
    """One initial case version as a dict (public fields + ``_`` internal bookkeeping)."""
    pts = case["pt_i"]
    order = np.argsort(case["onset_day"], kind="stable")
    reactions = [
        {"pt": PT_NAMES[pts[i]], "soc": PT_SOC[pts[i]], "onset_date": _iso(case["onset_day"][i])} for i in order
    ]
    serious = rng.random() < PT_SERIOUS[pts].max()
    seriousness = []
    if serious:
        seriousness = [SERIOUSNESS[int(rng.choice(5, p=SERIOUSNESS_P))]]
        if seriousness[0] != "hospitalisation" and rng.random() < 0.2:
            seriousness.append("hospitalisation")
    outcome = "fatal" if "death" in seriousness else OUTCOMES[int(rng.choice(5, p=OUTCOMES_P))]
    drugs, truth = [], []
    drugs.append(_suspect_entry(rng, r, pr, source))
    truth.append((r["batch_id"], pr["product_id"]))
    qual = {"patient_app": "consumer", "pharmacist": "pharmacist"}.get(
        source, "physician" if rng.random() < 0.8 else "other_hcp"
    )
    age = None if rng.random() < 0.06 else pat["age_years"]
    sex = None if rng.random() < 0.03 else pat["sex"]
    first_onset = min(case["onset_day"])
    names = ", ".join(x["pt"].lower() for x in reactions)
    who = f"{age}-year-old" if age is not None else "A"
    narrative = (
        f"{who} {'female' if sex == 'F' else 'male' if sex == 'M' else ''} patient "
        f"reported {names} {first_onset - r['day']} day(s) after receiving "
        f"{pr['name']} {pr['strength']}."
    ).replace("  ", " ")
    return {
        "case_id": None,
        "version": 1,
        "received_on": _iso(case["received"]),
        "source": source,
        "reporter_qualification": qual,
        "country": r["country"],
        "patient_ref": r["patient_ref"] if source == "patient_app" or rng.random() < 0.6 else None,
        "age_years": age,
        "sex": sex,
        "serious": bool(seriousness),
        "seriousness": seriousness,
        "outcome": outcome,
        "narrative": narrative,
        "drugs": drugs,
        "reactions": reactions,
        "_truth": truth,
        "_row": r["n"],
        "_conc": conc_row,
        "_received_day": case["received"],
        "_causes": case["cause"],
        "_lot_clean": r["lot_number"],
    }


def _suspect_entry(rng, r: dict, pr: dict, source: str) -> dict:
    """The suspect drug as this source reports it (name, typed lot, scanned code)."""
    scanned = source == "patient_app" and rng.random() < 0.45
    if scanned:
        lot = r["lot_number"] if rng.random() < 0.4 else None
    else:
        lot = typed_lot(rng, r["lot_number"], 0.22 if source == "patient_app" else 0.33)
    return {
        "role": "suspect",
        "product_name": reported_product_name(rng.random(), pr["name"], pr["ingredient"], pr["strength"]),
        "lot": lot,
        "pack_code": app_scan_form(rng, r) if scanned else None,
        "start_date": r["delivered_at"][:10],
    }


def _add_concomitants(rng, records: list[dict], drow: dict[int, dict], prod: list[dict]) -> None:
    """Append the concomitant drug (and its true batch) to cases of two-product patients."""
    for rec in records:
        c = rec["_conc"]
        if c is None:
            continue
        r = drow[c]
        pr = prod[r["p"]]
        rec["drugs"].append(
            {
                "role": "interacting" if rng.random() < 0.05 else "concomitant",
                "product_name": reported_product_name(rng.random(), pr["name"], pr["ingredient"], pr["strength"]),
                "lot": r["lot_number"] if rng.random() < 0.2 else None,
                "pack_code": None,
                "start_date": r["delivered_at"][:10],
            }
        )
        rec["_truth"].append((r["batch_id"], pr["product_id"]))


def _make_duplicates(
    rng, records: list[dict], drow: dict[int, dict], prod: list[dict], n_days: int
) -> list[tuple[dict, dict]]:
    """~2% of events reported again by another source under another case id."""
    out = []
    for rec in records:
        if rng.random() >= 0.02:
            continue
        received = rec["_received_day"] + int(rng.integers(1, 26))
        if received >= n_days:
            continue
        source = "hcp" if rec["source"] != "hcp" else ("pharmacist" if rng.random() < 0.5 else "patient_app")
        if source != "patient_app":  # professionals report on working days (day 0 is a Monday)
            received += {5: 2, 6: 1}.get(received % 7, 0)
            if received >= n_days:
                continue
        r = drow[rec["_row"]]
        pr = prod[r["p"]]
        dup = {
            **rec,
            "drugs": [_suspect_entry(rng, r, pr, source)]
            + [{**x, "product_name": x["product_name"].lower()} for x in rec["drugs"][1:]],
            "source": source,
            "received_on": _iso(received),
            "_received_day": received,
            "reporter_qualification": {"patient_app": "consumer", "hcp": "physician", "pharmacist": "pharmacist"}[
                source
            ],
            "patient_ref": rec["patient_ref"] if source == "patient_app" else None,
            "narrative": rec["narrative"].replace("patient reported", "patient presented with"),
            "_truth": list(rec["_truth"]),
            "_dup_of": rec,
        }
        out.append((dup, rec))
    return out


def _make_bad(rng, records: list[dict], scale: float) -> list[tuple[dict, str]]:
    """Lines the loader must quarantine: truncated JSON, no reactions, impossible dates."""
    n = max(4, round(30 * scale))
    picks = rng.choice(len(records), 3 * n, replace=False)
    out = []
    for j, i in enumerate(picks):
        kind = ("bad_json", "missing_reactions", "bad_date")[j // n]
        rec = {**records[int(i)], "drugs": [dict(x) for x in records[int(i)]["drugs"]], "_truth": []}
        rec["_month"] = rec["received_on"][:7]
        if kind == "missing_reactions":
            rec["reactions"] = []
        elif kind == "bad_date":
            y = rec["received_on"][:4]
            rec["received_on"] = [f"{y}-02-30", f"{y}-13-01", f"{y}-06-31", f"{y}-00-12"][j % 4]
        out.append((rec, kind))
    return out


def _assign_case_ids(all_cases: list[dict]) -> None:
    """``PVT-{country}-{year}-{seq}``, numbered per country and year in order of receipt."""
    order = sorted(range(len(all_cases)), key=lambda i: (all_cases[i]["_received_day"], all_cases[i]["country"], i))
    seq: dict[tuple[str, str], int] = {}
    for i in order:
        rec = all_cases[i]
        year = _iso(rec["_received_day"])[:4]
        key = (rec["country"], year)
        seq[key] = seq.get(key, 0) + 1
        rec["case_id"] = f"PVT-{rec['country']}-{year}-{seq[key]:06d}"


def _follow_ups(rng, records: list[dict], n_days: int) -> list[dict]:
    """~10% of cases get version 2: outcome/seriousness updated, sometimes the lot added."""
    out = []
    for rec in records:
        if rng.random() >= 0.10:
            continue
        received = rec["_received_day"] + int(rng.integers(5, 76))
        if received >= n_days:
            continue
        v2 = {
            **rec,
            "version": 2,
            "received_on": _iso(received),
            "_received_day": received,
            "drugs": [dict(x) for x in rec["drugs"]],
            "seriousness": list(rec["seriousness"]),
        }
        if v2["outcome"] in ("recovering", "unknown"):
            v2["outcome"] = "recovered" if rng.random() < 0.7 else "recovered_with_sequelae"
        if not v2["seriousness"] and rng.random() < 0.25:
            v2["seriousness"] = ["hospitalisation"]
        v2["serious"] = bool(v2["seriousness"])
        if v2["outcome"] == "fatal" and "death" not in v2["seriousness"]:
            v2["outcome"] = "not_recovered"
        drug0 = v2["drugs"][0]
        if drug0["lot"] is None and drug0["pack_code"] is None and rng.random() < 0.4:
            drug0["lot"] = rec.get("_lot_clean", None)
        v2["narrative"] = rec["narrative"] + f" Follow-up: outcome {v2['outcome']}."
        out.append(v2)
    return out


def _public(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def _observed(d: pl.DataFrame, cases: pl.DataFrame, plan, base_rate: BaseRate) -> dict:
    """Initial cases behind each planted signal and their expected background count."""
    dd = d.select("n", "p", "b", "c", "day")
    flat = cases.select("row", "pt_i").explode("pt_i")
    j = flat.join(dd, left_on="row", right_on="n")

    def count(mask_expr, pts):
        return int(j.filter(mask_expr & pl.col("pt_i").is_in([PT_INDEX[x] for x in pts]))["row"].n_unique())

    def expected(mask: np.ndarray, pts, extra_per_delivery: float = 0.0):
        idx = np.flatnonzero(mask)
        return round(float(base_rate.of(idx, [PT_INDEX[x] for x in pts]).sum() + extra_per_delivery * len(idx)), 1)

    p, b, c, day = (d[x].to_numpy() for x in ("p", "b", "c", "day"))
    isr = {t: r for t, r, _ in PRODUCTS[int(p[b == plan.defect_b][0])].known_adrs}.get(
        "Injection site reaction", 0.0
    ) / 1000
    return {
        "product": count((pl.col("p") == plan.signal_p) & (pl.col("day") >= plan.signal_start_day), [plan.signal_pt]),
        "product_expected": expected((p == plan.signal_p) & (day >= plan.signal_start_day), [plan.signal_pt]),
        "batch_defect": count(pl.col("b") == plan.defect_b, ["Hypersensitivity", "Injection site reaction"]),
        "batch_defect_expected": expected(b == plan.defect_b, ["Hypersensitivity"], isr),
        "cold_chain": count(pl.col("c") == plan.cold_c, ["Drug ineffective"]),
        "cold_chain_expected": expected(c == plan.cold_c, ["Drug ineffective"]),
    }


def _negative_controls(
    d: pl.DataFrame, cases: pl.DataFrame, products: pl.DataFrame, plan, base_rate: BaseRate, scale: float
) -> list[dict]:
    """Product-PT pairs with background reporting only and >= 12 expected cases at scale 1."""
    planted_p = {
        plan.signal_p,
        int(d.filter(pl.col("b") == plan.defect_b)["p"][0]),
        int(d.filter(pl.col("c") == plan.cold_c)["p"][0]),
    }
    n_by_p = d.group_by("p").len().sort(["len", "p"], descending=[True, False])
    flat = cases.select("row", "pt_i").explode("pt_i").join(d.select("n", "p"), left_on="row", right_on="n")
    out, used_pts = [], set()
    p_of = d["p"].to_numpy()
    for p, _n in n_by_p.iter_rows():
        if p in planted_p or len(out) >= 6:
            continue
        prod = products.row(p, named=True)
        labelled = {t for t, _, _ in PRODUCTS[p].known_adrs}
        for pt in NEGATIVE_CONTROL_PTS:
            if pt in labelled or pt in used_pts:
                continue
            exp = base_rate.of(np.flatnonzero(p_of == p), [PT_INDEX[pt]]).sum()
            if exp / scale < 12:
                continue
            obs = flat.filter((pl.col("p") == p) & (pl.col("pt_i") == PT_INDEX[pt]))["row"].n_unique()
            out.append(
                {
                    "product_id": prod["product_id"],
                    "pt": pt,
                    "expected_cases": round(float(exp), 1),
                    "observed_cases": int(obs),
                }
            )
            used_pts.add(pt)
            break
    return out
