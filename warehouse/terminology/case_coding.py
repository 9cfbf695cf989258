"""The case-coding step: reactions reported as verbatims coded to MedDRA during the run (issue 17).

Called by case loading (``warehouse.inputs.platform.cases.load_cases``) after the case tables are written.
Each distinct verbatim of a reaction that carries no reported PT is coded once by
:class:`warehouse.terminology.coder.Coder` with every language of the newest loaded MedDRA version, then:

* ``case_reaction_coding``: one row per coded part of each such reaction (a verbatim naming two reactions gives
  two parts), with LLT, PT code and name (the PT's English name when an English release of that version is
  loaded, as case reactions reported as PTs carry), primary SOC name, method, confidence, review flag, MedDRA
  version and language (the reporter's declared language, else the matched LLT's);
* ``meddra_coding``: the same codings per verbatim; those with ``needs_review`` are the review queue
  (``coder.review_queue``; the dashboard's coding review page);
* an analyst's decision in ``meddra_coding_decision`` (latest per verbatim and version) overrides the coder:
  ``accept`` keeps the coding and clears the review flag, ``recode`` replaces it by the chosen LLT (method
  ``manual``), ``reject`` leaves the verbatim uncoded (method ``rejected``).

``latest_case_reaction`` (warehouse/schema.py) then shows a verbatim-only reaction as each PT it was coded to;
unmatched or rejected verbatims have no PT and stay out of the PT statistics, counted here. Without a loaded
release nothing is coded and every verbatim-only reaction is counted as uncoded; reactions reported as PT names
are untouched either way. The step rewrites its tables from the case tables each time (idempotent).
"""

from __future__ import annotations

import duckdb
import polars as pl

from warehouse.terminology.coder import Coder

_CODING_SCHEMA = {
    "verbatim": pl.String,
    "part_seq": pl.Int32,
    "fragment": pl.String,
    "llt_code": pl.Int64,
    "pt_code": pl.Int64,
    "method": pl.String,
    "confidence": pl.Float64,
    "needs_review": pl.Boolean,
    "language": pl.String,
}


def newest_version(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute("SELECT meddra_version FROM meddra_release ORDER BY loaded_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def latest_decisions(con: duckdb.DuckDBPyConnection, version: str) -> dict[str, tuple[str, int | None]]:
    """verbatim -> (action, LLT code) of the latest analyst decision for ``version``."""
    rows = con.execute(
        "SELECT verbatim, action, llt_code FROM meddra_coding_decision WHERE meddra_version = ? "
        "QUALIFY row_number() OVER (PARTITION BY verbatim ORDER BY decided_at DESC, decision_id DESC) = 1",
        [version],
    ).fetchall()
    return {v: (a, c) for v, a, c in rows}


def _llt_of(con: duckdb.DuckDBPyConnection, version: str, llt_code: int) -> tuple[int, str | None] | None:
    row = con.execute(
        "SELECT pt_code, language FROM meddra_llt WHERE meddra_version = ? AND llt_code = ? AND current LIMIT 1",
        [version, llt_code],
    ).fetchone()
    return (int(row[0]), row[1]) if row else None


def code_verbatims(con: duckdb.DuckDBPyConnection, verbatims: list[str], version: str) -> pl.DataFrame:
    """Each verbatim's coded parts (see ``_CODING_SCHEMA``), analysts' decisions applied."""
    coder = Coder(con, version)
    decisions = latest_decisions(con, version)
    rows = []
    for v in verbatims:
        decision = decisions.get(v)
        action = decision[0] if decision else None
        target = _llt_of(con, version, decision[1]) if action == "recode" and decision[1] is not None else None
        if action == "recode" and target is not None:
            rows.append((v, 0, v, int(decision[1]), target[0], "manual", 1.0, False, target[1]))
            continue
        if action == "reject":
            rows.append((v, 0, v, None, None, "rejected", 0.0, False, None))
            continue
        for i, c in enumerate(coder.code(v)):
            review = c.needs_review and action != "accept"
            rows.append((v, i, c.fragment, c.llt_code, c.pt_code, c.method, c.confidence, review, c.language))
    return pl.DataFrame(rows, schema=_CODING_SCHEMA, orient="row")


def code_case_reactions(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Code every verbatim-only case reaction (module doc); returns counts for the step's metadata:
    ``verbatim_reactions`` (case reaction rows given as verbatims, all versions), ``verbatims_coded`` (of those,
    with at least one PT), ``verbatims_uncoded`` (the rest, out of the PT statistics), ``verbatims_to_review``
    (with a part flagged for review)."""
    con.execute("DELETE FROM case_reaction_coding")
    (n,) = con.execute("SELECT count(*) FROM case_reaction WHERE pt IS NULL AND verbatim IS NOT NULL").fetchone()
    version = newest_version(con)
    if version is None or n == 0:
        return {"verbatim_reactions": n, "verbatims_coded": 0, "verbatims_uncoded": n, "verbatims_to_review": 0}
    verbatims = [
        v
        for (v,) in con.execute(
            "SELECT DISTINCT verbatim FROM case_reaction WHERE pt IS NULL AND verbatim IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    coded = code_verbatims(con, verbatims, version)
    con.register("_coded", coded.to_arrow())
    try:
        # the review queue and the per-verbatim record (replaces this version's earlier codings of these texts)
        con.execute(
            "DELETE FROM meddra_coding WHERE meddra_version = ? AND verbatim IN (SELECT verbatim FROM _coded)",
            [version],
        )
        con.execute(
            "INSERT INTO meddra_coding (verbatim, language, meddra_version, part_seq, fragment, llt_code, pt_code, "
            "method, confidence, needs_review) SELECT verbatim, language, ?, part_seq, fragment, llt_code, pt_code, "
            "method, confidence, needs_review FROM _coded",
            [version],
        )
        con.execute(
            """
            INSERT INTO case_reaction_coding
            WITH pt_name AS (
                SELECT code, coalesce(any_value(name) FILTER (WHERE language = 'en'), any_value(name)) AS name
                FROM meddra_term WHERE level = 'pt' AND meddra_version = $v GROUP BY code
            ),
            soc_name AS (
                SELECT h.pt_code, coalesce(any_value(t.name) FILTER (WHERE t.language = 'en'), any_value(t.name))
                       AS name
                FROM meddra_hierarchy h
                JOIN meddra_term t ON t.level = 'soc' AND t.code = h.soc_code AND t.meddra_version = h.meddra_version
                     AND t.language = h.language
                WHERE h.primary_soc AND h.meddra_version = $v GROUP BY h.pt_code
            )
            SELECT r.case_id, r.version, r.reaction_seq, k.part_seq, k.llt_code, k.pt_code, p.name, s.name,
                   k.method, k.confidence, k.needs_review, $v, coalesce(r.verbatim_language, k.language)
            FROM case_reaction r
            JOIN _coded k ON k.verbatim = r.verbatim
            LEFT JOIN pt_name p ON p.code = k.pt_code
            LEFT JOIN soc_name s ON s.pt_code = k.pt_code
            WHERE r.pt IS NULL
            """,
            {"v": version},
        )
    finally:
        con.unregister("_coded")
    coded_n, review_n = con.execute(
        """
        SELECT count(*) FILTER (WHERE coded), count(*) FILTER (WHERE review) FROM (
            SELECT r.case_id, r.version, r.reaction_seq, bool_or(k.pt IS NOT NULL) AS coded,
                   bool_or(k.needs_review) AS review
            FROM case_reaction r JOIN case_reaction_coding k USING (case_id, version, reaction_seq)
            WHERE r.pt IS NULL GROUP BY ALL)
        """
    ).fetchone()
    return {
        "verbatim_reactions": n,
        "verbatims_coded": coded_n,
        "verbatims_uncoded": n - coded_n,
        "verbatims_to_review": review_n,
    }


def coding_scores(con: duckdb.DuckDBPyConnection, truth: pl.DataFrame) -> pl.DataFrame:
    """Precision and recall of the run's coding against labelled reactions, per language and overall.

    ``truth``: one row per verbatim reaction with ``case_id``, ``version``, ``reaction_seq``, ``language``,
    ``true_pts`` (list of PT names) and ``covered`` (whether its words are ones the terminology covers), as the
    synthetic world's ``ground_truth_verbatims.parquet``. Micro-averaged over PTs: precision = correct coded PTs /
    coded PTs, recall = correct coded PTs / true PTs, on covered reactions (a reaction naming two effects counts
    twice); ``recall_all`` also counts the uncovered ones as misses; ``to_review``: share of covered reactions
    with a part flagged for review."""
    coded = con.sql(
        "SELECT case_id, version::BIGINT AS version, reaction_seq::BIGINT AS reaction_seq, "
        "list(DISTINCT pt) FILTER (WHERE pt IS NOT NULL) AS coded_pts, bool_or(needs_review) AS review "
        "FROM case_reaction_coding GROUP BY ALL"
    ).pl()
    loaded = con.sql("SELECT DISTINCT case_id, version::BIGINT AS version FROM case_reaction").pl()
    truth = truth.join(loaded, on=["case_id", "version"], how="semi")  # lines quarantined by the loader drop out
    j = truth.join(coded, on=["case_id", "version", "reaction_seq"], how="left").with_columns(
        pl.col("coded_pts").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("review").fill_null(False),
    )
    j = j.with_columns(
        tp=pl.col("coded_pts").list.set_intersection("true_pts").list.len(),
        n_coded=pl.col("coded_pts").list.len(),
        n_true=pl.col("true_pts").list.len(),
    )

    def scores(frame: pl.DataFrame) -> pl.DataFrame:
        cov = pl.col("covered")
        return frame.select(
            reactions=pl.len(),
            covered=cov.sum(),
            precision=pl.col("tp").filter(cov).sum() / pl.col("n_coded").filter(cov).sum(),
            recall=pl.col("tp").filter(cov).sum() / pl.col("n_true").filter(cov).sum(),
            recall_all=pl.col("tp").sum() / pl.col("n_true").sum(),
            to_review=pl.col("review").filter(cov).mean(),
        )

    per = j.group_by("language").map_groups(lambda g: scores(g).with_columns(language=pl.lit(g["language"][0])))
    return (
        pl.concat([per, scores(j).with_columns(language=pl.lit("all"))], how="diagonal")
        .select("language", "reactions", "covered", "precision", "recall", "recall_all", "to_review")
        .sort("language")
    )
