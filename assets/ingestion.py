# Dagster validates context annotations at definition time, so no `from __future__ import annotations` here.
"""Inbox → warehouse: one asset per input, each a thin call into ``warehouse.inputs.platform``.

Every asset runs its load inside one transaction and reports its row and quarantine counts
as metadata; the asset checks below guard each hop.
"""

import dagster as dg

from assets.engine import EngineResource
from assets.resources import InboxResource, WarehouseResource
from warehouse.inputs.inbox import run_clock
from warehouse.inputs.namespaces import inbox_case_sql
from warehouse.inputs.platform.cases import load_cases
from warehouse.inputs.platform.deliveries import load_deliveries, load_medication_logs
from warehouse.inputs.platform.packs import load_packs
from warehouse.inputs.platform.reference import load_reference
from warehouse.inputs.platform.supply import load_supply_events
from warehouse.linkage.case_batch_links import LINK_TABLES, rebuild_case_batch_links

GROUP = "ingestion"

# A hop whose quarantine share exceeds this is flagged (WARN) for a person to look at.
QUARANTINE_WARN_SHARE = 0.02


def _load(context: dg.AssetExecutionContext, warehouse: WarehouseResource, loader, *args) -> dg.MaterializeResult:
    """Run one loader in one transaction; its row and quarantine counts become the asset's metadata,
    and its load_manifest rows carry the run id."""
    with warehouse.transaction() as con:
        counts = loader(con, *args)
        con.execute("UPDATE load_manifest SET run_id = ? WHERE run_id IS NULL", [context.run.run_id])
        rejected = con.sql(
            "SELECT kind, file, error FROM load_manifest WHERE status = 'rejected' AND run_id = ? ORDER BY file",
            params=[context.run.run_id],
        ).fetchall()
    for kind, file, error in rejected:  # file name and reason only: never a data row
        context.log.warning(f"{kind} file quarantined whole: {file}: {error}")
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(int(v)) for k, v in counts.items()})


@dg.asset(group_name=GROUP, kinds={"duckdb"}, description="Manufacturers, products and batches (reference/*.csv).")
def reference_data(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource
) -> dg.MaterializeResult:
    return _load(context, warehouse, load_reference, inbox.folder)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[reference_data],
    description="Pack serialisation uploads: every pack code and its batch.",
)
def packs(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource
) -> dg.MaterializeResult:
    return _load(context, warehouse, load_packs, inbox.folder)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[reference_data],
    description="EPCIS 2.0 supply-chain events at lot level, with temperature readings.",
)
def supply_events(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource
) -> dg.MaterializeResult:
    return _load(context, warehouse, load_supply_events, inbox.folder)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[packs],
    description="Post-delivery log: each scanned pack resolved to its batch; patients pseudonymised.",
)
def deliveries(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource
) -> dg.MaterializeResult:
    return _load(context, warehouse, load_deliveries, inbox.folder, warehouse.pseudonym_salt())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[deliveries],
    description="Patient-reported weekly medication use per delivery.",
)
def medication_logs(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource
) -> dg.MaterializeResult:
    return _load(context, warehouse, load_medication_logs, inbox.folder, warehouse.pseudonym_salt())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[reference_data],
    description="Adverse-event case versions; latest version marked, drugs mapped, duplicates flagged.",
)
def case_reports(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource
) -> dg.MaterializeResult:
    return _load(context, warehouse, load_cases, inbox.folder, warehouse.pseudonym_salt())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[case_reports, packs],
    description="Each case drug linked to its batch: scanned code > exact lot > normalised lot > fuzzy > product.",
)
def case_batch_links(warehouse: WarehouseResource, engine: EngineResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con, engine.open(con, LINK_TABLES) as eng:
        links = rebuild_case_batch_links(con, engine=eng)
        by_method = con.sql("SELECT method, count(*) FROM case_batch_link GROUP BY 1 ORDER BY 2 DESC").fetchall()
    return dg.MaterializeResult(
        metadata={"links": links, **{f"method_{m}": dg.MetadataValue.int(n) for m, n in by_method}}
    )


# ---- asset checks: every row accounted for (blocking), the run's clock --------------------------

# kind -> (quarantine stage, table count SQL of the rows loaded, reconcile quarantine rows per file)
ACCOUNTED = {
    "manufacturers": ("reference", "SELECT count(*) FROM manufacturer", True),
    "products": ("reference", "SELECT count(*) FROM product", True),
    "batches": ("reference", "SELECT count(*) FROM batch", True),
    "packs": ("packs", "SELECT count(*) FROM pack", True),
    # an event is loaded once however many batches it names; item-level quarantines of loaded events exist
    "supply": ("supply", "SELECT count(DISTINCT epcis_event_id) FROM supply_event", False),
    "deliveries": ("deliveries", "SELECT count(*) FROM delivery", True),
    "medication_logs": ("medication_logs", "SELECT count(*) FROM medication_log", True),
    "cases": ("cases", f"SELECT count(*) FROM case_report WHERE {inbox_case_sql()}", True),
}


def accounting_violations(con, kind: str) -> dict:
    """What breaks the row accounting of one input kind (empty when every row is accounted for):
    a file whose rows read differ from loaded + quarantined; loaded totals that differ from the
    table; quarantined counts that differ from the quarantine table's rows for the file."""
    stage, table_sql, per_file = ACCOUNTED[kind]
    files = con.sql(
        "SELECT file, rows_read, rows_loaded, rows_quarantined, status, error FROM load_manifest WHERE kind = ? "
        "ORDER BY file",
        params=[kind],
    ).fetchall()
    out: dict = {}
    unbalanced = [f for f, r, ld, q, _, _ in files if r != ld + q]
    if unbalanced:
        out["read_not_loaded_plus_quarantined"] = unbalanced
    loaded = sum(ld for _, _, ld, _, _, _ in files)
    in_table = con.sql(table_sql).fetchone()[0]
    if loaded != in_table:
        out["loaded_vs_table"] = f"manifest {loaded} rows loaded, table holds {in_table}"
    if per_file:
        rows = dict(
            con.sql(
                "SELECT source_file, count(*) FROM quarantine WHERE stage = ? AND NOT starts_with(coalesce(detail, ''), "
                "'whole file:') GROUP BY 1",
                params=[stage],
            ).fetchall()
        )
        off = [f for f, _, _, q, _, _ in files if rows.get(f, 0) != q]
        if off:
            out["quarantined_vs_quarantine_table"] = off
    return out


def _accounting_check(asset, kinds: list[str]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="rows_accounted_for",
        blocking=True,
        description=f"Per file of {', '.join(kinds)}: rows read = rows loaded + rows quarantined (load_manifest), "
        "and the manifest agrees with the tables.",
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            violations = {k: v for k in kinds if (v := accounting_violations(con, k))}
            totals = con.sql(
                "SELECT kind, count(*), sum(rows_read), sum(rows_loaded), sum(rows_quarantined), "
                "count(*) FILTER (WHERE status = 'rejected') FROM load_manifest WHERE list_contains(?, kind) "
                "GROUP BY 1 ORDER BY 1",
                params=[kinds],
            ).fetchall()
            rejected = con.sql(
                "SELECT file, error FROM load_manifest WHERE status = 'rejected' AND list_contains(?, kind) ORDER BY 1",
                params=[kinds],
            ).fetchall()
        return dg.AssetCheckResult(
            passed=not violations,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "per_kind": dg.MetadataValue.json(
                    [
                        {"kind": k, "files": n, "read": r, "loaded": ld, "quarantined": q, "files_rejected": x}
                        for k, n, r, ld, q, x in totals
                    ]
                ),
                "files_rejected": dg.MetadataValue.json([{"file": f, "error": e} for f, e in rejected]),
                "violations": dg.MetadataValue.json(violations),
            },
            description="every row accounted for" if not violations else f"row accounting broken: {violations}",
        )

    return _check


accounting_checks = [
    _accounting_check(reference_data, ["manufacturers", "products", "batches"]),
    _accounting_check(packs, ["packs"]),
    _accounting_check(supply_events, ["supply"]),
    _accounting_check(deliveries, ["deliveries"]),
    _accounting_check(medication_logs, ["medication_logs"]),
    _accounting_check(case_reports, ["cases"]),
]


@dg.asset_check(
    asset=case_reports,
    blocking=True,
    description="The data lock point (the latest case received) is not after the run's clock (PVTRACE_CLOCK, default now).",
)
def data_lock_point_not_after_clock(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    clock = run_clock()
    with warehouse.connect() as con:
        last = con.sql("SELECT max(received_on) FROM latest_case").fetchone()[0]
    return dg.AssetCheckResult(
        passed=last is None or last <= clock.date(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"latest_received_on": str(last), "clock": clock.isoformat()},
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
