"""Append-only, numbered schema migrations for the state database.

Each migration is portable SQL that runs on SQLite and PostgreSQL alike: TEXT ids (no
autoincrement, whose syntax differs), TEXT for JSON, TIMESTAMP-free ISO strings for times.
REAL means a double, as it does in SQLite; on PostgreSQL, where REAL is 4 bytes, Store runs it
as DOUBLE PRECISION. Tests run every migration on both (tests/test_store.py).
Never edit a migration that has shipped; add the next number instead.
"""

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "001_initial",
        [
            """CREATE TABLE dataset_versions (
                id TEXT PRIMARY KEY,          -- e.g. support@3f9a1c
                name TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                kind TEXT NOT NULL,           -- chat | preference | text | eval
                path TEXT NOT NULL,
                n_records INTEGER NOT NULL,
                manifest TEXT NOT NULL,       -- JSON
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_dataset_versions_name ON dataset_versions (name)",
            """CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                method TEXT NOT NULL,         -- sft | dpo | cpt | pretrain
                status TEXT NOT NULL,         -- running | finished | failed
                dataset_version TEXT,
                config TEXT NOT NULL,         -- resolved config, JSON
                output_dir TEXT NOT NULL,
                created_at TEXT NOT NULL,
                finished_at TEXT,
                error TEXT
            )""",
            """CREATE TABLE run_metrics (
                run_id TEXT NOT NULL REFERENCES runs (id),
                step INTEGER NOT NULL,
                name TEXT NOT NULL,
                value REAL NOT NULL,
                PRIMARY KEY (run_id, name, step)
            )""",
            """CREATE TABLE model_versions (
                id TEXT PRIMARY KEY,          -- e.g. support:sft@v3
                name TEXT NOT NULL,
                version INTEGER NOT NULL,
                base_model TEXT NOT NULL,
                adapter_path TEXT,
                weights_path TEXT,
                run_id TEXT REFERENCES runs (id),
                dataset_version TEXT,
                lineage TEXT NOT NULL,        -- JSON
                metrics TEXT NOT NULL,        -- JSON
                created_at TEXT NOT NULL,
                UNIQUE (name, version)
            )""",
            """CREATE TABLE reports (
                id TEXT PRIMARY KEY,
                suite TEXT NOT NULL,
                subject TEXT NOT NULL,        -- the rung or model version scored
                n INTEGER NOT NULL,
                metrics TEXT NOT NULL,        -- JSON aggregate
                path TEXT NOT NULL,           -- per-example results
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE aliases (
                scope TEXT NOT NULL,          -- dataset | model
                name TEXT NOT NULL,
                alias TEXT NOT NULL,          -- latest | production | candidate | ...
                target TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (scope, name, alias)
            )""",
            """CREATE TABLE alias_history (
                id TEXT PRIMARY KEY,
                scope TEXT NOT NULL,
                name TEXT NOT NULL,
                alias TEXT NOT NULL,
                target TEXT NOT NULL,
                previous TEXT,
                reason TEXT,
                at TEXT NOT NULL
            )""",
            """CREATE TABLE traces (
                id TEXT PRIMARY KEY,          -- returned to the client as the response id
                model TEXT NOT NULL,
                request TEXT NOT NULL,        -- JSON, redacted
                response TEXT NOT NULL,       -- JSON, redacted
                status INTEGER NOT NULL,
                latency_ms REAL NOT NULL,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_traces_model ON traces (model, created_at)",
            """CREATE TABLE feedback (
                id TEXT PRIMARY KEY,
                trace_id TEXT NOT NULL REFERENCES traces (id),
                kind TEXT NOT NULL,           -- thumbs | rating | correction | comment
                value TEXT NOT NULL,
                comment TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_feedback_trace ON feedback (trace_id)",
        ],
    ),
    (
        "002_traces_serving",
        [
            # What answered a served request, so feedback can be traced back to a rung and a version.
            "ALTER TABLE traces ADD COLUMN endpoint TEXT",
            "ALTER TABLE traces ADD COLUMN rung TEXT",
            "ALTER TABLE traces ADD COLUMN model_version TEXT",
        ],
    ),
    (
        "003_human_review",
        [
            # Expert review of a seeded sample of a dataset version (issue 17). Decisions are appended,
            # never updated: a reviewer who changes their mind adds a row, and the newest one counts.
            """CREATE TABLE data_reviews (
                id TEXT PRIMARY KEY,
                dataset_version TEXT NOT NULL,
                split TEXT,                   -- NULL: every split
                sample_size INTEGER NOT NULL,
                seed INTEGER NOT NULL,
                target REAL NOT NULL,         -- the pass rate the review must show, e.g. 0.95
                created_by TEXT NOT NULL,
                created_at TEXT NOT NULL,
                result_version TEXT           -- the dataset version its fails and edits became
            )""",
            """CREATE TABLE data_review_items (
                review_id TEXT NOT NULL REFERENCES data_reviews (id),
                record_id TEXT NOT NULL,
                ord INTEGER NOT NULL,         -- the order the reviewer sees
                PRIMARY KEY (review_id, record_id)
            )""",
            """CREATE TABLE data_review_decisions (
                id TEXT PRIMARY KEY,
                review_id TEXT NOT NULL REFERENCES data_reviews (id),
                record_id TEXT NOT NULL,
                reviewer TEXT NOT NULL,
                decision TEXT NOT NULL,       -- pass | fail | edit
                reason TEXT,
                edited TEXT,                  -- JSON: the record's new content, for edit
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_data_review_decisions ON data_review_decisions (review_id, record_id, created_at)",
            # Blind side-by-side human eval of two subjects' answers on the same suite examples.
            """CREATE TABLE pair_reviews (
                id TEXT PRIMARY KEY,
                subject_a TEXT NOT NULL,
                subject_b TEXT NOT NULL,
                report_a TEXT NOT NULL,
                report_b TEXT NOT NULL,
                suite TEXT NOT NULL,
                sample_size INTEGER NOT NULL,
                seed INTEGER NOT NULL,
                created_by TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE pair_review_items (
                review_id TEXT NOT NULL REFERENCES pair_reviews (id),
                example_id TEXT NOT NULL,
                ord INTEGER NOT NULL,
                shown_first TEXT NOT NULL,    -- a | b: which answer the rater sees on the left
                PRIMARY KEY (review_id, example_id)
            )""",
            """CREATE TABLE pair_ratings (
                id TEXT PRIMARY KEY,
                review_id TEXT NOT NULL REFERENCES pair_reviews (id),
                example_id TEXT NOT NULL,
                rater TEXT NOT NULL,
                shown_first TEXT NOT NULL,    -- what this rater saw on the left, as stored when rated
                a_correctness INTEGER, a_style INTEGER, a_usefulness INTEGER,
                b_correctness INTEGER, b_style INTEGER, b_usefulness INTEGER,
                preference TEXT,              -- a | b | tie, or NULL when only rated
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_pair_ratings ON pair_ratings (review_id, example_id, rater, created_at)",
        ],
    ),
    (
        "004_traces_arm",
        [
            # Which arm of an A/B canary (serve.ab) answered: production | candidate; NULL outside one.
            "ALTER TABLE traces ADD COLUMN arm TEXT",
        ],
    ),
]
