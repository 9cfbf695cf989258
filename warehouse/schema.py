"""The warehouse schema: versioned DDL for every table PV Trace keeps in DuckDB.

Tables follow docs/architecture.md ("The data path"). Case tables keep *every* version of a case (nothing is lost);
``is_latest`` marks the version statistics use, and the ``latest_*`` views expose only those.
Patients appear only as salted pseudonymous keys (``patient_key``).
"""

from __future__ import annotations

import duckdb

SCHEMA_VERSION = 3  # 3: load_manifest, pipeline_run, quarantine.line, e2b_ack, case_drug.lot_expiry, case_report.region

# Natural keys of the large fact tables. They are not declared as PRIMARY KEYs: DuckDB keeps an
# index per key, and replacing a table's rows through that index costs ~100 s per 2M rows
# (measured here on `delivery` and `pack` at 10x scale; 0.1 s without it). Loaders de-duplicate
# on these keys before writing, and `key_violations` (an asset check) verifies it.
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "pack": ("pack_code",),
    "supply_event": ("event_id",),
    "delivery": ("delivery_id",),
    "medication_log": ("log_id",),
    "case_report": ("case_id", "version"),
    "case_drug": ("case_id", "version", "drug_seq"),
    "case_reaction": ("case_id", "version", "reaction_seq"),
    "case_batch_link": ("case_id", "version", "drug_seq"),
    "case_reaction_meddra": ("case_id", "version", "reaction_seq"),
    "case_duplicate_suggestion": ("case_id", "candidate_of"),
    "disproportionality_score": ("level", "drug", "event"),
    "batch_heterogeneity": ("level", "product_id", "event", "batch_id"),
    "sequential_monitoring": ("batch_id", "pt"),
}

_DDL = [
    """
    CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER NOT NULL,
        applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    # ---- reference --------------------------------------------------------------------
    """
    CREATE TABLE IF NOT EXISTS manufacturer (
        manufacturer_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        country VARCHAR,
        region VARCHAR,
        alert_email VARCHAR,
        alert_webhook_url VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS product (
        product_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        manufacturer_id VARCHAR NOT NULL,
        ingredient VARCHAR NOT NULL,
        atc_code VARCHAR,
        form VARCHAR,
        strength VARCHAR,
        route VARCHAR,
        region VARCHAR,
        gtin VARCHAR,
        ndc VARCHAR,
        nmpa_drug_code VARCHAR,
        storage_min_c DOUBLE,
        storage_max_c DOUBLE,
        additional_monitoring BOOLEAN
    )""",
    """
    CREATE TABLE IF NOT EXISTS batch (
        batch_id VARCHAR PRIMARY KEY,
        product_id VARCHAR NOT NULL,
        lot_number VARCHAR NOT NULL,
        site VARCHAR,
        manufactured_on DATE,
        expiry_on DATE,
        released_on DATE,
        units_released BIGINT,
        recall_status VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS pack (
        pack_code VARCHAR NOT NULL,
        code_system VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        serial VARCHAR,
        gtin VARCHAR,
        nmpa_drug_code VARCHAR,
        commissioned_at TIMESTAMP
    )""",
    # ---- supply chain (EPCIS 2.0 shaped) -----------------------------------------------
    """
    CREATE TABLE IF NOT EXISTS supply_event (
        event_id VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        action VARCHAR,
        biz_step VARCHAR,
        disposition VARCHAR,
        event_time TIMESTAMPTZ NOT NULL,
        read_point VARCHAR,
        biz_location VARCHAR,
        source_location VARCHAR,
        destination_location VARCHAR,
        epc_class VARCHAR,
        gtin VARCHAR,
        nmpa_drug_code VARCHAR,
        lot_number VARCHAR,
        batch_id VARCHAR,
        quantity DOUBLE,
        consignment_id VARCHAR,
        region VARCHAR,
        min_temp_c DOUBLE,
        max_temp_c DOUBLE,
        source_file VARCHAR
    )""",
    # EPCIS event id, role of the row's items in the event (object/parent/child/input/output),
    # the parent of an aggregation, instance EPCs counted, temperature readings (loaders.supply)
    "ALTER TABLE supply_event ADD COLUMN IF NOT EXISTS epcis_event_id VARCHAR",
    "ALTER TABLE supply_event ADD COLUMN IF NOT EXISTS role VARCHAR",
    "ALTER TABLE supply_event ADD COLUMN IF NOT EXISTS parent_id VARCHAR",
    "ALTER TABLE supply_event ADD COLUMN IF NOT EXISTS epc_count INTEGER",
    "ALTER TABLE supply_event ADD COLUMN IF NOT EXISTS sensor_readings INTEGER",
    """
    CREATE TABLE IF NOT EXISTS cold_chain_excursion (
        batch_id VARCHAR NOT NULL,
        product_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        event_time TIMESTAMPTZ NOT NULL,
        biz_step VARCHAR,
        consignment_id VARCHAR,
        region VARCHAR,
        min_temp_c DOUBLE,
        max_temp_c DOUBLE,
        storage_min_c DOUBLE,
        storage_max_c DOUBLE,
        readings INTEGER,
        readings_out_of_range INTEGER,
        first_out_of_range_at TIMESTAMPTZ,
        last_out_of_range_at TIMESTAMPTZ,
        peak_at TIMESTAMPTZ,
        duration_minutes DOUBLE,
        PRIMARY KEY (event_id, batch_id)
    )""",
    # one row per batch: what a regulator or manufacturer asks (warehouse.linkage.batch_record)
    """
    CREATE TABLE IF NOT EXISTS batch_traceability (
        batch_id VARCHAR PRIMARY KEY,
        lot_number VARCHAR,
        product_id VARCHAR,
        product_name VARCHAR,
        ingredient VARCHAR,
        form VARCHAR,
        strength VARCHAR,
        gtin VARCHAR,
        nmpa_drug_code VARCHAR,
        manufacturer_id VARCHAR,
        manufacturer_name VARCHAR,
        site VARCHAR,
        manufactured_on DATE,
        released_on DATE,
        expiry_on DATE,
        recall_status VARCHAR,
        storage_min_c DOUBLE,
        storage_max_c DOUBLE,
        units_released BIGINT,
        units_shipped DOUBLE,
        units_delivered BIGINT,
        deliveries BIGINT,
        patients BIGINT,
        first_delivery DATE,
        last_delivery DATE,
        n_regions BIGINT,
        regions STRUCT(region VARCHAR, country VARCHAR, units BIGINT, deliveries BIGINT, pharmacies BIGINT)[],
        n_pharmacies BIGINT,
        pharmacies STRUCT(pharmacy_id VARCHAR, region VARCHAR, units BIGINT, first_delivery DATE,
                          last_delivery DATE)[],
        consignments BIGINT,
        route STRUCT(event_time TIMESTAMPTZ, event_type VARCHAR, biz_step VARCHAR, disposition VARCHAR,
                     role VARCHAR, location VARCHAR, source_location VARCHAR, destination_location VARCHAR,
                     consignment_id VARCHAR, region VARCHAR, quantity DOUBLE, min_temp_c DOUBLE,
                     max_temp_c DOUBLE, event_id VARCHAR)[],
        n_excursions BIGINT,
        max_excursion_temp_c DOUBLE,
        excursions STRUCT(event_id VARCHAR, event_time TIMESTAMPTZ, biz_step VARCHAR, consignment_id VARCHAR,
                          region VARCHAR, min_temp_c DOUBLE, max_temp_c DOUBLE, storage_min_c DOUBLE,
                          storage_max_c DOUBLE, readings_out_of_range INTEGER, first_out_of_range_at TIMESTAMPTZ,
                          peak_at TIMESTAMPTZ, last_out_of_range_at TIMESTAMPTZ, duration_minutes DOUBLE)[],
        linked_cases BIGINT,
        linked_suspect_cases BIGINT,
        suspect_cases_per_10k_packs DOUBLE,
        linked_reports STRUCT(method VARCHAR, reports BIGINT, suspect_reports BIGINT, case_ids VARCHAR[])[]
    )""",
    # ---- exposure -----------------------------------------------------------------------
    """
    CREATE TABLE IF NOT EXISTS delivery (
        delivery_id VARCHAR NOT NULL,
        delivered_at TIMESTAMPTZ NOT NULL,
        pack_code VARCHAR NOT NULL,
        code_system VARCHAR,
        batch_id VARCHAR NOT NULL,
        product_id VARCHAR NOT NULL,
        patient_key VARCHAR NOT NULL,
        pharmacy_id VARCHAR,
        region VARCHAR,
        country VARCHAR,
        quantity INTEGER NOT NULL,
        source_file VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS medication_log (
        log_id VARCHAR NOT NULL,
        patient_key VARCHAR NOT NULL,
        delivery_id VARCHAR NOT NULL,
        week_start DATE NOT NULL,
        doses_taken INTEGER,
        doses_missed INTEGER
    )""",
    # ---- cases: every version kept --------------------------------------------------------
    """
    CREATE TABLE IF NOT EXISTS case_report (
        case_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        is_latest BOOLEAN NOT NULL,
        received_on DATE NOT NULL,
        source VARCHAR NOT NULL,
        reporter_qualification VARCHAR,
        country VARCHAR,
        patient_key VARCHAR,
        age_years DOUBLE,
        sex VARCHAR,
        serious BOOLEAN,
        seriousness VARCHAR[],
        outcome VARCHAR,
        narrative VARCHAR,
        duplicate_of VARCHAR,
        source_file VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS case_drug (
        case_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        drug_seq INTEGER NOT NULL,
        role VARCHAR NOT NULL,
        product_name_reported VARCHAR,
        product_id VARCHAR,
        ingredient VARCHAR,
        mapping_method VARCHAR,
        lot_reported VARCHAR,
        pack_code_reported VARCHAR,
        start_date DATE
    )""",
    """
    CREATE TABLE IF NOT EXISTS case_reaction (
        case_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        reaction_seq INTEGER NOT NULL,
        pt VARCHAR NOT NULL,
        soc VARCHAR,
        onset_date DATE
    )""",
    """
    CREATE TABLE IF NOT EXISTS case_batch_link (
        case_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        drug_seq INTEGER NOT NULL,
        batch_id VARCHAR,
        product_id VARCHAR,
        method VARCHAR NOT NULL,
        confidence DOUBLE NOT NULL,
        candidates VARCHAR[],
        reason VARCHAR
    )""",
    # ---- bad input and lineage ------------------------------------------------------------
    """
    CREATE TABLE IF NOT EXISTS quarantine (
        stage VARCHAR NOT NULL,
        source_file VARCHAR,
        record_key VARCHAR,
        reason VARCHAR NOT NULL,
        detail VARCHAR,
        raw VARCHAR,
        quarantined_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    """
    CREATE TABLE IF NOT EXISTS ingested_file (
        path VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        n_bytes BIGINT NOT NULL,
        loaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (path, kind)
    )""",
    # ---- external case sources (warehouse.inputs.regulator.ingest: FAERS, VAERS, E2B(R3), openFDA) -------------
    """
    CREATE TABLE IF NOT EXISTS case_deleted (
        case_id VARCHAR PRIMARY KEY,
        source_file VARCHAR,
        deleted_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    """
    CREATE TABLE IF NOT EXISTS case_reaction_meddra (
        case_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        reaction_seq INTEGER NOT NULL,
        meddra_code VARCHAR,
        meddra_version VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS case_duplicate_suggestion (
        case_id VARCHAR NOT NULL,
        candidate_of VARCHAR NOT NULL,
        score DOUBLE NOT NULL,
        basis VARCHAR NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS vaers_lot_counts (
        source_sha256 VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        vax_type VARCHAR NOT NULL,
        vax_manu VARCHAR NOT NULL,
        lot VARCHAR NOT NULL,
        reports BIGINT NOT NULL,
        serious_reports BIGINT NOT NULL,
        deaths BIGINT NOT NULL,
        measure VARCHAR NOT NULL,
        PRIMARY KEY (source_sha256, vax_type, vax_manu, lot)
    )""",
    # ---- derived: scores and the signal register -------------------------------------------
    """
    CREATE TABLE IF NOT EXISTS disproportionality_score (
        level VARCHAR NOT NULL,
        drug VARCHAR NOT NULL,
        event VARCHAR NOT NULL,
        n11 BIGINT, n1_ BIGINT, n_1 BIGINT, n BIGINT, e DOUBLE,
        prr DOUBLE, prr_lo95 DOUBLE, prr_hi95 DOUBLE,
        chi2 DOUBLE, chi2_yates DOUBLE,
        ror DOUBLE, ror_lo95 DOUBLE, ror_hi95 DOUBLE,
        ic DOUBLE, ic025 DOUBLE, ic975 DOUBLE,
        ebgm DOUBLE, eb05 DOUBLE, eb95 DOUBLE,
        p_fisher DOUBLE, q_bh DOUBLE,
        rules_fired VARCHAR[],
        data_lock_point DATE
    )""",
    # batch statistics (warehouse.queries.batch_inputs): heterogeneity per product x PT/SOC x batch,
    # its funnel-plot grid, and weekly MaxSPRT per batch x event of interest
    """
    CREATE TABLE IF NOT EXISTS batch_heterogeneity (
        level VARCHAR NOT NULL, product_id VARCHAR NOT NULL, event VARCHAR NOT NULL, batch_id VARCHAR NOT NULL,
        cases BIGINT, exposure DOUBLE, n_batches BIGINT, cases_total BIGINT, exposure_total DOUBLE,
        rate DOUBLE, rate_rest DOUBLE, expected DOUBLE, rr DOUBLE, rr_lo DOUBLE, rr_hi DOUBLE,
        p_exact DOUBLE, q_exact DOUBLE, eb_alpha DOUBLE, eb_method VARCHAR,
        rr_shrunk DOUBLE, rr_shrunk_lo DOUBLE, rr_shrunk_hi DOUBLE,
        model VARCHAR, nb_alpha DOUBLE, resid_pearson DOUBLE, p_nb DOUBLE, q_nb DOUBLE,
        target_rate DOUBLE, lo95 DOUBLE, hi95 DOUBLE, lo998 DOUBLE, hi998 DOUBLE, above_95 BOOLEAN, above_998 BOOLEAN,
        n_onset BIGINT, n_onset_rest BIGINT, median_batch DOUBLE, median_rest DOUBLE, p_ks DOUBLE, p_mwu DOUBLE,
        q_mwu DOUBLE, flagged BOOLEAN NOT NULL, data_lock_point DATE
    )""",
    """
    CREATE TABLE IF NOT EXISTS batch_funnel (
        level VARCHAR NOT NULL, product_id VARCHAR NOT NULL, event VARCHAR NOT NULL, exposure DOUBLE NOT NULL,
        target_rate DOUBLE, lo95 DOUBLE, hi95 DOUBLE, lo998 DOUBLE, hi998 DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS sequential_monitoring (
        product_id VARCHAR NOT NULL, batch_id VARCHAR NOT NULL, pt VARCHAR NOT NULL, first_week DATE, looks BIGINT,
        observed BIGINT, expected DOUBLE, llr DOUBLE, expected_total DOUBLE, alpha DOUBLE, min_events BIGINT,
        cv DOUBLE, signalled BOOLEAN NOT NULL, crossing_look BIGINT, crossed_on DATE, observed_at_crossing BIGINT,
        expected_at_crossing DOUBLE, cv_group DOUBLE, signalled_group BOOLEAN, crossing_look_group BIGINT,
        crossed_on_group DATE, data_lock_point DATE
    )""",
    """
    CREATE TABLE IF NOT EXISTS mgps_prior (
        level VARCHAR PRIMARY KEY,
        alpha1 DOUBLE NOT NULL, beta1 DOUBLE NOT NULL, alpha2 DOUBLE NOT NULL, beta2 DOUBLE NOT NULL, p DOUBLE NOT NULL,
        loglik DOUBLE, n_pairs BIGINT, converged BOOLEAN, at_bound BOOLEAN, method VARCHAR,
        data_lock_point DATE
    )""",
    """
    CREATE TABLE IF NOT EXISTS signal (
        signal_id VARCHAR PRIMARY KEY,
        level VARCHAR NOT NULL,
        product_id VARCHAR,
        ingredient VARCHAR,
        pt VARCHAR NOT NULL,
        batch_id VARCHAR,
        methods VARCHAR[],
        figures JSON,
        first_detected DATE NOT NULL,
        last_detected DATE NOT NULL,
        status VARCHAR NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS signal_history (
        signal_id VARCHAR NOT NULL,
        changed_at TIMESTAMP NOT NULL,
        from_status VARCHAR,
        to_status VARCHAR NOT NULL,
        actor VARCHAR NOT NULL,
        comment VARCHAR,
        run_id VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS alert (
        alert_id VARCHAR PRIMARY KEY,
        manufacturer_id VARCHAR NOT NULL,
        signal_ids VARCHAR[] NOT NULL,
        batch_ids VARCHAR[],
        content_hash VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        json_path VARCHAR,
        html_path VARCHAR
    )""",
    # ---- manufacturer alerts: a transactional outbox (warehouse.stores.alert_outbox) ---------------------
    # the alert's state (signals, statuses, implicated batches), the exact document delivered
    # on every channel, and the alert it updates
    "ALTER TABLE alert ADD COLUMN IF NOT EXISTS supersedes VARCHAR",
    "ALTER TABLE alert ADD COLUMN IF NOT EXISTS state JSON",
    "ALTER TABLE alert ADD COLUMN IF NOT EXISTS document VARCHAR",
    # optional channel settings per manufacturer (docs/inbox-format.md); never secrets
    "ALTER TABLE manufacturer ADD COLUMN IF NOT EXISTS alert_channels VARCHAR",
    "ALTER TABLE manufacturer ADD COLUMN IF NOT EXISTS alert_webhook_secret_env VARCHAR",
    """
    CREATE TABLE IF NOT EXISTS alert_delivery (
        alert_id VARCHAR NOT NULL,
        channel VARCHAR NOT NULL,
        manufacturer_id VARCHAR NOT NULL,
        idempotency_key VARCHAR NOT NULL,
        destination VARCHAR,
        state VARCHAR NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMP NOT NULL,
        next_attempt_at TIMESTAMP,
        last_attempt_at TIMESTAMP,
        sent_at TIMESTAMP,
        last_error VARCHAR,
        response_code VARCHAR,
        message_id VARCHAR,
        PRIMARY KEY (alert_id, channel)
    )""",
    """
    CREATE TABLE IF NOT EXISTS alert_delivery_attempt (
        alert_id VARCHAR NOT NULL,
        channel VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        outcome VARCHAR NOT NULL,
        response_code VARCHAR,
        message_id VARCHAR,
        error VARCHAR,
        run_id VARCHAR
    )""",
    # ---- views: what statistics read --------------------------------------------------------
    """
    CREATE OR REPLACE VIEW latest_case AS
        SELECT * FROM case_report WHERE is_latest""",
    """
    CREATE OR REPLACE VIEW latest_case_drug AS
        SELECT d.* FROM case_drug d JOIN case_report c USING (case_id, version) WHERE c.is_latest""",
    """
    CREATE OR REPLACE VIEW latest_case_reaction AS
        SELECT r.* FROM case_reaction r JOIN case_report c USING (case_id, version) WHERE c.is_latest""",
    # ---- issue 20: E2B(R3) acknowledgments from a regulator's gateway (warehouse/inputs/regulator/e2b_ack.py) ----
    """
    CREATE TABLE IF NOT EXISTS e2b_ack (
        ack_batch_id VARCHAR NOT NULL,          -- ACK.M.1
        message_seq INTEGER NOT NULL,           -- 1.. per ICSR acknowledgment; 0 = the batch answered as a whole
        ack_created TIMESTAMP,                  -- ACK.M.4 (UTC)
        ack_sender VARCHAR,                     -- ACK.M.2
        ack_receiver VARCHAR,                   -- ACK.M.3
        batch_id VARCHAR NOT NULL,              -- ACK.A.1 = the N.1.2 we sent
        local_message_number VARCHAR,           -- ACK.A.2
        batch_transmitted TIMESTAMP,            -- ACK.A.3 (UTC)
        batch_code VARCHAR NOT NULL,            -- ACK.A.4: AA, AE, AR
        batch_detail VARCHAR,                   -- ACK.A.5
        icsr_message_id VARCHAR,                -- ACK.B.r.1 (N.2.r.1 or, in FDA's example, C.1.1)
        local_report_number VARCHAR,            -- ACK.B.r.2
        icsr_created TIMESTAMP,                 -- ACK.B.r.5 (UTC)
        icsr_code VARCHAR,                      -- ACK.B.r.6: CA, CR
        icsr_detail VARCHAR,                    -- ACK.B.r.7: the gateway's reasons
        state VARCHAR NOT NULL,                 -- accepted, rejected, batch_accepted, batch_rejected, batch_error
        source_file VARCHAR,
        loaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (ack_batch_id, message_seq)
    )""",
    # ---- issue 12 (regulator files): an expiry typed after the lot is kept apart from it (YYYY-MM);
    # the state/province a report came from (VAERS STATE), which duplicate suggestions must not cross
    "ALTER TABLE case_drug ADD COLUMN IF NOT EXISTS lot_expiry VARCHAR",
    "ALTER TABLE case_report ADD COLUMN IF NOT EXISTS region VARCHAR",
    # ---- issue 12: row accounting (load manifest), quarantine line numbers, run generations ----------------------
    """
    CREATE TABLE IF NOT EXISTS load_manifest (
        kind VARCHAR NOT NULL,
        file VARCHAR NOT NULL,
        sha256 VARCHAR,
        format VARCHAR NOT NULL,
        n_bytes BIGINT,
        rows_read BIGINT NOT NULL,
        rows_loaded BIGINT NOT NULL,
        rows_quarantined BIGINT NOT NULL,
        rows_fallback_decoded BIGINT NOT NULL DEFAULT 0,
        status VARCHAR NOT NULL,
        error VARCHAR,
        run_id VARCHAR,
        loaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    "ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS line BIGINT",
    """
    CREATE TABLE IF NOT EXISTS pipeline_run (
        run_id VARCHAR NOT NULL,
        generation INTEGER,
        inbox VARCHAR,
        inbox_sha256 VARCHAR,
        clock TIMESTAMPTZ,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        status VARCHAR NOT NULL,
        failed_steps VARCHAR
    )""",
    # ---- issue 17: MedDRA releases (warehouse.terminology), each under its (version, language) -----------
    """
    CREATE TABLE IF NOT EXISTS meddra_release (
        meddra_version VARCHAR NOT NULL,
        language VARCHAR NOT NULL,
        source VARCHAR,
        loaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    """
    CREATE TABLE IF NOT EXISTS meddra_term (
        meddra_version VARCHAR NOT NULL,
        language VARCHAR NOT NULL,
        level VARCHAR NOT NULL,
        code BIGINT NOT NULL,
        name VARCHAR NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS meddra_llt (
        meddra_version VARCHAR NOT NULL,
        language VARCHAR NOT NULL,
        llt_code BIGINT NOT NULL,
        llt_name VARCHAR NOT NULL,
        pt_code BIGINT NOT NULL,
        current BOOLEAN NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS meddra_hierarchy (
        meddra_version VARCHAR NOT NULL,
        language VARCHAR NOT NULL,
        pt_code BIGINT NOT NULL,
        hlt_code BIGINT NOT NULL,
        hlgt_code BIGINT NOT NULL,
        soc_code BIGINT NOT NULL,
        primary_soc BOOLEAN NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS meddra_smq (
        meddra_version VARCHAR NOT NULL,
        language VARCHAR NOT NULL,
        smq_code BIGINT NOT NULL,
        smq_name VARCHAR NOT NULL,
        smq_level BIGINT,
        smq_status VARCHAR,
        smq_algorithm VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS meddra_smq_term (
        meddra_version VARCHAR NOT NULL,
        language VARCHAR NOT NULL,
        smq_code BIGINT NOT NULL,
        term_code BIGINT NOT NULL,
        term_level BIGINT NOT NULL,
        term_scope BIGINT NOT NULL,
        term_status VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS meddra_coding (
        verbatim VARCHAR NOT NULL,
        language VARCHAR,
        meddra_version VARCHAR NOT NULL,
        part_seq INTEGER NOT NULL,
        fragment VARCHAR,
        llt_code BIGINT,
        pt_code BIGINT,
        method VARCHAR NOT NULL,
        confidence DOUBLE NOT NULL,
        needs_review BOOLEAN NOT NULL,
        coded_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    # ---- issue 14 item 4: the signal priority score and its components (signals.priority), per register row,
    # recomputed at every run's data lock point (priority_on)
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority DOUBLE",
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority_strength DOUBLE",
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority_batch DOUBLE",
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority_seriousness DOUBLE",
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority_recency DOUBLE",
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority_completeness DOUBLE",
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority_reporter DOUBLE",
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS priority_on DATE",
    # ---- issue 17 (h17b): verbatim reactions coded during the run (warehouse.terminology.case_coding) ---------
    "ALTER TABLE case_reaction ADD COLUMN IF NOT EXISTS verbatim VARCHAR",
    "ALTER TABLE case_reaction ADD COLUMN IF NOT EXISTS verbatim_language VARCHAR",
    "ALTER TABLE case_reaction ALTER COLUMN pt DROP NOT NULL",  # a verbatim-only reaction has no reported PT
    """
    CREATE TABLE IF NOT EXISTS case_reaction_coding (
        case_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        reaction_seq INTEGER NOT NULL,
        part_seq INTEGER NOT NULL,
        llt_code BIGINT,
        pt_code BIGINT,
        pt VARCHAR,
        soc VARCHAR,
        method VARCHAR NOT NULL,
        confidence DOUBLE NOT NULL,
        needs_review BOOLEAN NOT NULL,
        meddra_version VARCHAR NOT NULL,
        language VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS meddra_coding_decision (
        decision_id VARCHAR NOT NULL,
        verbatim VARCHAR NOT NULL,
        meddra_version VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        llt_code BIGINT,
        actor VARCHAR NOT NULL,
        decided_at TIMESTAMP NOT NULL,
        comment VARCHAR
    )""",
    # a reaction reported as a PT is itself; a verbatim-only one is each PT its coding found (unmatched and
    # rejected parts, or no release loaded: no row, so it stays out of the PT statistics)
    """
    CREATE OR REPLACE VIEW latest_case_reaction AS
        SELECT r.case_id, r.version, r.reaction_seq, r.pt, r.soc, r.onset_date,
               r.verbatim, r.verbatim_language, CAST(NULL AS INTEGER) AS part_seq,
               CAST(NULL AS BIGINT) AS coded_llt_code, CAST(NULL AS VARCHAR) AS coding_method,
               CAST(NULL AS VARCHAR) AS coding_meddra_version
        FROM case_reaction r JOIN case_report c USING (case_id, version)
        WHERE c.is_latest AND r.pt IS NOT NULL
        UNION ALL  -- two branches, each an equi-join (an OR-free join condition): a LEFT JOIN whose condition also
                   -- tested r.pt IS NULL ran as a nested loop, 1.2 s for 28k reactions on the demo world
        SELECT r.case_id, r.version, r.reaction_seq, k.pt, k.soc, r.onset_date,
               r.verbatim, r.verbatim_language, k.part_seq, k.llt_code AS coded_llt_code,
               k.method AS coding_method, k.meddra_version AS coding_meddra_version
        FROM case_reaction r JOIN case_report c USING (case_id, version)
        JOIN case_reaction_coding k ON k.case_id = r.case_id AND k.version = r.version
             AND k.reaction_seq = r.reaction_seq
        WHERE c.is_latest AND r.pt IS NULL AND k.pt IS NOT NULL""",
    # the run's event level (PT, HLT, HLGT, SOC, SMQ narrow/broad) with each signal; PT and SMQ signals coexist
    "ALTER TABLE signal ADD COLUMN IF NOT EXISTS event_level VARCHAR DEFAULT 'pt'",
    """
    CREATE TABLE IF NOT EXISTS meddra_event_map (
        event_level VARCHAR NOT NULL,
        pt VARCHAR NOT NULL,
        event VARCHAR NOT NULL
    )""",
]


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and view that does not exist yet; migrate older versions; record the version."""
    con.execute(_DDL[0])
    recorded = con.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    if recorded is not None and recorded > SCHEMA_VERSION:
        raise RuntimeError(
            f"warehouse schema version {recorded} is newer than this code's {SCHEMA_VERSION}; upgrade PV Trace"
        )
    if recorded == 1:
        _drop_fact_table_indexes(con)
    for statement in _DDL:
        con.execute(statement)
    if recorded != SCHEMA_VERSION:
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION])


def _drop_fact_table_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Version 1 → 2: rebuild the fact tables without their PRIMARY KEY index (see NATURAL_KEYS)."""
    existing = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    views = [name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
    for view in views:  # recreated by _DDL
        con.execute(f"DROP VIEW IF EXISTS {view}")
    for table in NATURAL_KEYS:
        if table in existing:
            con.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
    for statement in _DDL:
        con.execute(statement)
    for table in NATURAL_KEYS:
        if table in existing:
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {table}_v1")
            con.execute(f"DROP TABLE {table}_v1")


def key_violations(con: duckdb.DuckDBPyConnection, tables: list[str] | None = None) -> dict[str, int]:
    """Rows beyond the first per natural key (and rows with a null key part), per table."""
    out = {}
    for table in tables or list(NATURAL_KEYS):
        cols = ", ".join(NATURAL_KEYS[table])
        nulls = " OR ".join(f"{c} IS NULL" for c in NATURAL_KEYS[table])
        (n,) = con.execute(
            f"SELECT (count(*) - count(DISTINCT ({cols}))) + count(*) FILTER (WHERE {nulls}) FROM {table}"
        ).fetchone()
        out[table] = int(n)
    return out


LOCK_WAIT_SECONDS = 15.0


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return "Could not set lock" in str(exc) or "Conflicting lock" in str(exc)


def connect(path: str, read_only: bool = False, lock_wait: float = LOCK_WAIT_SECONDS) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file (creating the schema unless read-only).

    DuckDB lets one process hold a file at a time when any of them writes (a read-only open
    also blocks a writer). Other processes (the dashboard applying a triage decision) hold it
    for milliseconds, so a conflicting lock is retried with backoff for up to ``lock_wait``
    seconds before the error is raised with what was held.
    """
    import time

    from warehouse.files import restrict_umask

    restrict_umask()  # the warehouse and its WAL are created 0600 (issue 16)
    deadline, delay = time.monotonic() + lock_wait, 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    if not read_only:
        ensure_schema(con)
    return con
