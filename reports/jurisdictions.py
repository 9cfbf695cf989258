"""Jurisdiction profiles: who receives a periodic report, in which language, with which thresholds and clocks.

One :class:`Jurisdiction` per regulator PV Trace reports to (NMPA, EMA, FDA, PMDA). A profile says
which products are in scope (the market region of the product), which detection rules the
regulator's own screening uses (the report still shows every method's statistic), the expedited
reporting clock for serious cases, the document language(s) and the template.

Sources and how sure we are (see ../shared/domain/formats.md §5): items marked **[M]** there are
from memory and were *not* re-checked against the regulation; they are marked ``verified=False``
here and the report prints that flag, so nobody mistakes a profile for legal advice.

* EMA: GVP Module VI — serious ICSRs within 15 days, non-serious EU ICSRs within 90 days [M];
  SDR = ROR lower 95% bound > 1 with n ≥ 5 (n ≥ 3 under additional monitoring), EMA/849944/2016 [M].
* FDA: 21 CFR 314.80 — 15-day "alert" reports for serious *and unexpected* events [M]; expectedness
  against the US label is not known to PV Trace, so every serious case is put on the 15-day clock
  and the report says so; MGPS EB05 ≥ 2 (Szarfman 2002) is FDA's data-mining screen.
* NMPA: 药品不良反应报告和监测管理办法 (2011, Order 81) and GVP (2021) — deaths immediately, serious
  within 15 days, others within 30 days [M]. "Immediately" is put on the clock as day 0.
* PMDA: PMD Act enforcement rules — serious unexpected within 15 days, serious expected within
  30 days [M]; as for FDA, expectedness is unknown, so the stricter 15 days applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from signals.rules import RuleThresholds


@dataclass(frozen=True)
class Clock:
    """Days from day 0 (first receipt of a valid case) to the regulatory due date."""

    fatal_days: int
    serious_days: int
    non_serious_days: int | None  # None: non-serious cases go in periodic reports, no individual clock
    rule: str
    verified: bool = False

    def days_for(self, fatal: bool, serious: bool) -> int | None:
        if fatal:
            return self.fatal_days
        if serious:
            return self.serious_days
        return self.non_serious_days


@dataclass(frozen=True)
class Jurisdiction:
    code: str  # used in file names: nmpa, ema, fda, pmda
    authority: str
    authority_local: str | None
    market_region: str  # product.region of the products this regulator authorises
    countries: tuple[str, ...]  # ISO country codes of the territory (for "domestic" counts)
    languages: tuple[str, ...]  # first is the primary language of the document
    primary_rules: tuple[str, ...]  # names in signals.rules.RULES that the regulator screens with
    thresholds: RuleThresholds
    threshold_note: str
    clock: Clock
    e2b_receiver: str  # N.1.4 / N.2.r.3 batch and message receiver identifier
    template: str = "periodic_report.html.j2"
    pdf_template: str = "periodic_report.typ.j2"  # Typst source for the PDF, from the same context
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def bilingual(self) -> bool:
        return len(self.languages) > 1

    @property
    def needs_cjk(self) -> bool:
        return any(lang in ("zh", "ja", "ko") for lang in self.languages)


EU_COUNTRIES = (
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
    "IS",
    "LI",
    "NO",
)

JURISDICTIONS: dict[str, Jurisdiction] = {
    j.code: j
    for j in (
        Jurisdiction(
            code="nmpa",
            authority="National Medical Products Administration (China)",
            authority_local="国家药品监督管理局",
            market_region="CN",
            countries=("CN",),
            languages=("zh", "en"),
            primary_rules=("evans", "ema_sdr"),
            thresholds=RuleThresholds(),
            threshold_note="PRR ≥ 2, χ² ≥ 4, n ≥ 3 and ROR lower 95% bound > 1, n ≥ 5 (frequentist screening as "
            "used by the national ADR monitoring centre) [M: not verified]",
            clock=Clock(
                fatal_days=0,
                serious_days=15,
                non_serious_days=30,
                rule="Deaths immediately (day 0); serious and new ADRs within 15 days; others within 30 days "
                "(Order 81, 2011; GVP 2021) [M: not verified]",
            ),
            e2b_receiver="CN-NMPA-CDR",
        ),
        Jurisdiction(
            code="ema",
            authority="European Medicines Agency (EudraVigilance)",
            authority_local=None,
            market_region="EU",
            countries=EU_COUNTRIES,
            languages=("en",),
            primary_rules=("ema_sdr",),
            thresholds=RuleThresholds(),
            threshold_note="Signal of disproportionate reporting: ROR lower 95% bound > 1 with n ≥ 5 (n ≥ 3 for products "
            "under additional monitoring), EMA/849944/2016 [M: not verified]",
            clock=Clock(
                fatal_days=15,
                serious_days=15,
                non_serious_days=90,
                rule="Serious ICSRs within 15 days, non-serious EU ICSRs within 90 days (GVP Module VI) "
                "[M: not verified]",
            ),
            e2b_receiver="EVHUMAN",
        ),
        Jurisdiction(
            code="fda",
            authority="U.S. Food and Drug Administration (FAERS)",
            authority_local=None,
            market_region="US",
            countries=("US",),
            languages=("en",),
            primary_rules=("fda_mgps", "evans"),
            thresholds=RuleThresholds(),
            threshold_note="MGPS EB05 ≥ 2 (Szarfman 2002); PRR ≥ 2, χ² ≥ 4, n ≥ 3 (Evans 2001) where EBGM was not "
            "computed",
            clock=Clock(
                fatal_days=15,
                serious_days=15,
                non_serious_days=None,
                rule="15-day alert reports for serious and unexpected events; others in periodic reports "
                "(21 CFR 314.80) [M: not verified]. Expectedness is not assessed by PV Trace: every "
                "serious case is put on the 15-day clock",
            ),
            e2b_receiver="ZZFDA",
        ),
        Jurisdiction(
            code="pmda",
            authority="Pharmaceuticals and Medical Devices Agency (Japan)",
            authority_local="医薬品医療機器総合機構",
            market_region="JP",
            countries=("JP",),
            languages=("ja", "en"),
            primary_rules=("ema_sdr", "who_umc"),
            thresholds=RuleThresholds(ema_n=3),
            threshold_note="ROR lower 95% bound > 1 with n ≥ 3; IC025 > 0 [M: not verified]",
            clock=Clock(
                fatal_days=15,
                serious_days=15,
                non_serious_days=None,
                rule="Serious unexpected within 15 days, serious expected within 30 days (PMD Act enforcement "
                "rules) [M: not verified]. Expectedness is not assessed: every serious case is put on "
                "the 15-day clock",
            ),
            e2b_receiver="PMDA",
        ),
    )
}
JURISDICTION_CODES: tuple[str, ...] = tuple(JURISDICTIONS)


# Section and column labels. A bilingual document shows "中文 / English"; English text is the fallback.
LABELS: dict[str, dict[str, str]] = {
    "title": {
        "en": "Periodic signal and batch safety report",
        "zh": "定期信号与批次安全性报告",
        "ja": "定期シグナル・ロット安全性報告",
    },
    "authority": {"en": "Recipient", "zh": "报送机构", "ja": "提出先"},
    "period": {"en": "Reporting period", "zh": "报告期", "ja": "報告対象期間"},
    "dlp": {"en": "Data lock point", "zh": "数据锁定点", "ja": "データロックポイント"},
    "report_id": {"en": "Report id", "zh": "报告编号", "ja": "報告番号"},
    "generated": {"en": "Generated", "zh": "生成时间", "ja": "作成日時"},
    "summary": {"en": "Summary", "zh": "摘要", "ja": "要約"},
    "data_methods": {"en": "Data and methods", "zh": "数据与方法", "ja": "データと方法"},
    "sources": {"en": "Sources and counts", "zh": "数据来源与数量", "ja": "データソースと件数"},
    "methods": {"en": "Methods and thresholds", "zh": "方法与阈值", "ja": "方法と閾値"},
    "terminology": {"en": "Terminology", "zh": "术语", "ja": "用語"},
    "signals": {"en": "Signals", "zh": "信号", "ja": "シグナル"},
    "new": {"en": "New signals", "zh": "新信号", "ja": "新規シグナル"},
    "ongoing": {"en": "Ongoing signals", "zh": "持续信号", "ja": "継続中のシグナル"},
    "closed": {"en": "Closed signals", "zh": "已关闭信号", "ja": "終了したシグナル"},
    "signal_pages": {
        "en": "Signal evaluation and batch traceability annex",
        "zh": "信号评价与批次追溯附件",
        "ja": "シグナル評価とロット追跡付録",
    },
    "cases_over_time": {"en": "Cases over time", "zh": "病例数随时间变化", "ja": "症例数の推移"},
    "seriousness": {"en": "Seriousness", "zh": "严重性", "ja": "重篤性"},
    "tto": {"en": "Time to onset", "zh": "发生时间", "ja": "発現までの期間"},
    "batches": {"en": "Implicated batches", "zh": "涉及批次", "ja": "関連ロット"},
    "expedited": {"en": "Expedited reporting clock", "zh": "快速报告时限", "ja": "緊急報告期限"},
    "caveats": {"en": "Caveats", "zh": "说明与局限", "ja": "注意事項"},
    "lineage": {"en": "Lineage", "zh": "数据溯源", "ja": "データ来歴"},
    "data_quality": {"en": "Data quality", "zh": "数据质量", "ja": "データ品質"},
    "e2b": {"en": "E2B(R3) transmission", "zh": "E2B(R3) 传输", "ja": "E2B(R3) 送信"},
}


def label(key: str, jurisdiction: Jurisdiction) -> str:
    """The label in the document's language(s): ``"摘要 / Summary"`` for a bilingual NMPA report."""
    texts = LABELS[key]
    parts = [texts.get(lang) or texts["en"] for lang in jurisdiction.languages]
    unique = list(dict.fromkeys(parts))
    return " / ".join(unique)


def get(code: str) -> Jurisdiction:
    try:
        return JURISDICTIONS[code.lower()]
    except KeyError:
        raise ValueError(f"unknown jurisdiction {code!r}; known: {', '.join(JURISDICTION_CODES)}") from None
