# Dagster validates context annotations at definition time, so no `from __future__ import annotations` here.
"""Inbox → warehouse: one asset per input, each a thin call into ``warehouse.inputs.platform``.

Every asset runs its load inside one transaction and reports its row and quarantine counts
as metadata; the asset checks below guard each hop.
"""

import dagster as dg

from assets.resources import InboxResource, WarehouseResource
from warehouse.inputs.platform.cases import load_cases
from warehouse.inputs.platform.deliveries import load_deliveries, load_medication_logs
from warehouse.inputs.platform.packs import load_packs
from warehouse.inputs.platform.reference import load_reference
from warehouse.inputs.platform.supply import load_supply_events
from warehouse.linkage.case_batch_links import rebuild_case_batch_links

GROUP = "ingestion"

# A hop whose quarantine share exceeds this is flagged (WARN) for a person to look at.
QUARANTINE_WARN_SHARE = 0.02


def _load(warehouse: WarehouseResource, loader, *args) -> dg.MaterializeResult:
    """Run one loader in one transaction; its row and quarantine counts become the asset's metadata."""
    with warehouse.transaction() as con:
        counts = loader(con, *args)
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(int(v)) for k, v in counts.items()})


@dg.asset(group_name=GROUP, kinds={"duckdb"}, description="Manufacturers, products and batches (reference/*.csv).")
def reference_data(warehouse: WarehouseResource, inbox: InboxResource) -> dg.MaterializeResult:
    return _load(warehouse, load_reference, inbox.folder)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[reference_data],
    description="Pack serialisation uploads: every pack code and its batch.",
)
def packs(warehouse: WarehouseResource, inbox: InboxResource) -> dg.MaterializeResult:
    return _load(warehouse, load_packs, inbox.folder)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[reference_data],
    description="EPCIS 2.0 supply-chain events at lot level, with temperature readings.",
)
def supply_events(warehouse: WarehouseResource, inbox: InboxResource) -> dg.MaterializeResult:
    return _load(warehouse, load_supply_events, inbox.folder)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[packs],
    description="Post-delivery log: each scanned pack resolved to its batch; patients pseudonymised.",
)
def deliveries(warehouse: WarehouseResource, inbox: InboxResource) -> dg.MaterializeResult:
    return _load(warehouse, load_deliveries, inbox.folder, warehouse.pseudonym_salt())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[deliveries],
    description="Patient-reported weekly medication use per delivery.",
)
def medication_logs(warehouse: WarehouseResource, inbox: InboxResource) -> dg.MaterializeResult:
    return _load(warehouse, load_medication_logs, inbox.folder, warehouse.pseudonym_salt())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[reference_data],
    description="Adverse-event case versions; latest version marked, drugs mapped, duplicates flagged.",
)
def case_reports(warehouse: WarehouseResource, inbox: InboxResource) -> dg.MaterializeResult:
    return _load(warehouse, load_cases, inbox.folder, warehouse.pseudonym_salt())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[case_reports, packs],
    description="Each case drug linked to its batch: scanned code > exact lot > normalised lot > fuzzy > product.",
)
def case_batch_links(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con:
        links = rebuild_case_batch_links(con)
        by_method = con.sql("SELECT method, count(*) FROM case_batch_link GROUP BY 1 ORDER BY 2 DESC").fetchall()
    return dg.MaterializeResult(
        metadata={"links": len(links), **{f"method_{m}": dg.MetadataValue.int(n) for m, n in by_method}}
    )


# ---- asset checks: each hop says how much it quarantined, and why ----------------------------


def _quarantine_check(stage: str, table: str, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        reasons = con.sql(
            "SELECT reason, count(*) FROM quarantine WHERE stage = ? GROUP BY 1 ORDER BY 2 DESC", params=[stage]
        ).fetchall()
        kept = con.sql(f"SELECT count(*) FROM {table}").fetchone()[0]
    quarantined = sum(n for _, n in reasons)
    share = quarantined / max(kept + quarantined, 1)
    return dg.AssetCheckResult(
        passed=share <= QUARANTINE_WARN_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "kept": kept,
            "quarantined": quarantined,
            "share": float(round(share, 5)),
            **{f"reason_{r}": n for r, n in reasons},
        },
        description=f"{quarantined} {stage} rows quarantined ({share:.2%}); see table quarantine",
    )


@dg.asset_check(asset=deliveries, description="Share of delivery rows quarantined (bad/unknown/expired codes).")
def deliveries_quarantine(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _quarantine_check("deliveries", "delivery", warehouse)


@dg.asset_check(
    asset=case_reports, description="Share of case lines quarantined (bad JSON, missing fields, bad dates)."
)
def cases_quarantine(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _quarantine_check("cases", "case_report", warehouse)


@dg.asset_check(asset=packs, description="Share of pack uploads quarantined.")
def packs_quarantine(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _quarantine_check("packs", "pack", warehouse)


@dg.asset_check(asset=case_reports, description="Suspect drugs that map to no product or ingredient (orphans).")
def orphan_case_drugs(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        total, orphans = con.sql(
            "SELECT count(*), count(*) FILTER (WHERE product_id IS NULL AND ingredient IS NULL AND pack_code_reported IS NULL) "
            "FROM latest_case_drug WHERE role <> 'concomitant'"
        ).fetchone()
        names = con.sql(
            "SELECT product_name_reported, count(*) n FROM latest_case_drug WHERE product_id IS NULL AND ingredient IS NULL "
            "AND pack_code_reported IS NULL GROUP BY 1 ORDER BY n DESC LIMIT 10"
        ).fetchall()
    share = orphans / max(total, 1)
    return dg.AssetCheckResult(
        passed=share <= 0.05,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "suspect_drugs": total,
            "orphans": orphans,
            "share": float(round(share, 5)),
            "top_unmapped": dg.MetadataValue.json([{"name": n, "rows": c} for n, c in names]),
        },
    )


@dg.asset_check(asset=case_reports, description="Share of latest cases flagged as suspected duplicates.")
def duplicate_rate(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        total, dups = con.sql("SELECT count(*), count(duplicate_of) FROM latest_case").fetchone()
    share = dups / max(total, 1)
    return dg.AssetCheckResult(
        passed=share <= 0.10,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"cases": total, "duplicates_flagged": dups, "share": float(round(share, 5))},
    )


@dg.asset_check(asset=case_batch_links, description="Linkage rate to a batch, per method and per report source.")
def linkage_rate(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        per_source = con.sql(
            """
            SELECT c.source, count(*) AS drugs, count(l.batch_id) AS linked,
                   round(count(l.batch_id) / count(*), 4) AS rate
            FROM latest_case_drug d JOIN latest_case c ON c.case_id = d.case_id
            LEFT JOIN case_batch_link l ON l.case_id = d.case_id AND l.version = d.version AND l.drug_seq = d.drug_seq
            WHERE d.role <> 'concomitant' GROUP BY 1 ORDER BY 1
            """
        ).pl()
        per_method = con.sql(
            "SELECT method, count(*) AS n FROM case_batch_link l JOIN latest_case c USING (case_id, version) "
            "GROUP BY 1 ORDER BY 2 DESC"
        ).pl()
    total = int(per_source["drugs"].sum() or 0)
    linked = int(per_source["linked"].sum() or 0)
    return dg.AssetCheckResult(
        passed=total > 0 and linked > 0,
        metadata={
            "suspect_drugs": total,
            "linked_to_batch": linked,
            "rate": float(round(linked / max(total, 1), 4)),
            "per_source": dg.MetadataValue.json(per_source.to_dicts()),
            "per_method": dg.MetadataValue.json(per_method.to_dicts()),
        },
    )
