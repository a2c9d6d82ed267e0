//! The rollout's tables and every statement on them, built from `contracts.flag_table`: the
//! flags (`feature_flags`), their per-conversation overrides (`feature_flags_overrides`) and the
//! append-only audit of every change (`feature_flags_audit`), all in the flag table's schema.
//! Names are checked identifiers, quoted; values always travel as bind parameters.

use super::Table;

/// The flag the product plan rolls out.
pub const DEFAULT_FLAG: &str = "ENABLE_ABLY_REALTIME";

/// The three tables of the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagTables {
    pub flags: Table,
    pub overrides: Table,
    pub audit: Table,
}

/// The columns a flag is read with.
pub const FLAG_COLUMNS: &str =
    "name, enabled, rollout_percent, stickiness, group_id, version, updated_at, updated_by, reason";

impl FlagTables {
    pub fn of(flags: &Table) -> FlagTables {
        let with = |suffix: &str| Table { schema: flags.schema.clone(), name: format!("{}_{suffix}", flags.name) };
        FlagTables { flags: flags.clone(), overrides: with("overrides"), audit: with("audit") }
    }

    /// The statements `db migrate` runs for the rollout: idempotent, in order. The default flag
    /// is created off at 0 %, with its audit row.
    pub fn migration(&self) -> Vec<String> {
        let (f, o, a) = (self.flags.quoted(), self.overrides.quoted(), self.audit.quoted());
        let an = &self.audit.name;
        let func = format!("\"{}\".\"{an}_append_only\"", self.audit.schema);
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {f} (\n    \
                    name            text        PRIMARY KEY,\n    \
                    enabled         boolean     NOT NULL DEFAULT false,\n    \
                    rollout_percent integer     NOT NULL DEFAULT 0 CHECK (rollout_percent BETWEEN 0 AND 100),\n    \
                    stickiness      text        NOT NULL DEFAULT 'conversationId',\n    \
                    group_id        text        NOT NULL,\n    \
                    version         bigint      NOT NULL DEFAULT 1,\n    \
                    updated_at      timestamptz NOT NULL DEFAULT now(),\n    \
                    updated_by      text        NOT NULL,\n    \
                    reason          text        NOT NULL DEFAULT ''\n)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {o} (\n    \
                    flag            text        NOT NULL REFERENCES {f} (name) ON DELETE CASCADE,\n    \
                    conversation_id text        NOT NULL,\n    \
                    enabled         boolean     NOT NULL,\n    \
                    expires_at      timestamptz,\n    \
                    created_at      timestamptz NOT NULL DEFAULT now(),\n    \
                    created_by      text        NOT NULL,\n    \
                    reason          text        NOT NULL DEFAULT '',\n    \
                    PRIMARY KEY (flag, conversation_id)\n)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {a} (\n    \
                    id              bigserial   PRIMARY KEY,\n    \
                    flag            text        NOT NULL,\n    \
                    at              timestamptz NOT NULL DEFAULT now(),\n    \
                    actor           text        NOT NULL,\n    \
                    action          text        NOT NULL,\n    \
                    before          jsonb,\n    \
                    after           jsonb,\n    \
                    reason          text        NOT NULL,\n    \
                    command         text        NOT NULL\n)"
            ),
            format!("CREATE INDEX IF NOT EXISTS \"{an}_flag_at_idx\" ON {a} (flag, at)"),
            // Append-only in the database itself, not only by convention.
            format!(
                "CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
            ),
            format!("DROP TRIGGER IF EXISTS \"{an}_append_only\" ON {a}"),
            format!(
                "CREATE TRIGGER \"{an}_append_only\" BEFORE UPDATE OR DELETE ON {a} \
                 FOR EACH ROW EXECUTE FUNCTION {func}()"
            ),
            // A row trigger never sees TRUNCATE: a statement-level one refuses it too.
            format!("DROP TRIGGER IF EXISTS \"{an}_no_truncate\" ON {a}"),
            format!(
                "CREATE TRIGGER \"{an}_no_truncate\" BEFORE TRUNCATE ON {a} \
                 FOR EACH STATEMENT EXECUTE FUNCTION {func}()"
            ),
            format!(
                "WITH created AS (\n    \
                    INSERT INTO {f} (name, group_id, updated_by, reason) \
                    VALUES ('{DEFAULT_FLAG}', '{DEFAULT_FLAG}', 'broker-ops db migrate', 'created off at 0 %') \
                    ON CONFLICT (name) DO NOTHING RETURNING name, enabled, rollout_percent, version\n) \
                 INSERT INTO {a} (flag, actor, action, after, reason, command) \
                 SELECT name, 'broker-ops db migrate', 'create', \
                 jsonb_build_object('enabled', enabled, 'percent', rollout_percent, 'version', version), \
                 'created off at 0 %', 'broker-ops db migrate' FROM created"
            ),
        ]
    }

    /// Whether the three tables exist: one row of three booleans.
    pub fn exist_sql(&self) -> String {
        let r = |t: &Table| format!("to_regclass('{}') IS NOT NULL", t.quoted().replace('\'', "''"));
        format!("SELECT {}, {}, {}", r(&self.flags), r(&self.overrides), r(&self.audit))
    }

    /// Every flag, by name.
    pub fn list_sql(&self) -> String {
        format!("SELECT {FLAG_COLUMNS} FROM {} ORDER BY name", self.flags.quoted())
    }

    /// One flag (`$1`).
    pub fn flag_sql(&self) -> String {
        format!("SELECT {FLAG_COLUMNS} FROM {} WHERE name = $1", self.flags.quoted())
    }

    /// Flag `$1` locked for the rest of the transaction, read for its version: a change that
    /// depends on the flag as it was shown (an override) is refused when it moved since.
    pub fn lock_flag_sql(&self) -> String {
        format!("SELECT version FROM {} WHERE name = $1 FOR UPDATE", self.flags.quoted())
    }

    /// Creates flag `$1` (group id the same) off at 0 %, by `$2`, for `$3`.
    pub fn create_sql(&self) -> String {
        format!(
            "INSERT INTO {} (name, group_id, updated_by, reason) VALUES ($1, $1, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING {FLAG_COLUMNS}",
            self.flags.quoted()
        )
    }

    /// Sets flag `$1` to enabled `$3` and percent `$4`, by `$5` for `$6`, only if it is still
    /// at version `$2` (optimistic concurrency): no row back means someone changed it since.
    pub fn update_sql(&self) -> String {
        format!(
            "UPDATE {} SET enabled = $3, rollout_percent = $4, updated_by = $5, reason = $6, \
             updated_at = now(), version = version + 1 WHERE name = $1 AND version = $2 RETURNING {FLAG_COLUMNS}",
            self.flags.quoted()
        )
    }

    /// One audit row: flag, actor, action, before, after, reason, command.
    pub fn audit_sql(&self) -> String {
        format!(
            "INSERT INTO {} (flag, actor, action, before, after, reason, command) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self.audit.quoted()
        )
    }

    /// The newest `$2` audit rows of flag `$1`, newest first.
    pub fn history_sql(&self) -> String {
        format!(
            "SELECT id, flag, at, actor, action, before, after, reason, command FROM {} \
             WHERE flag = $1 ORDER BY at DESC, id DESC LIMIT $2",
            self.audit.quoted()
        )
    }

    /// When flag `$1` last had its percent changed (the current step's start): the newest audit
    /// row whose `after` percent differs from its `before` or that created or enabled the flag.
    pub fn step_started_sql(&self) -> String {
        format!(
            "SELECT max(at) FROM {} WHERE flag = $1 AND action <> 'override' AND \
             (before IS NULL OR before->'percent' IS DISTINCT FROM after->'percent' \
              OR before->'enabled' IS DISTINCT FROM after->'enabled')",
            self.audit.quoted()
        )
    }

    /// Sets the override of flag `$1` for conversation `$2`: enabled `$3`, expiry `$4`, by `$5`
    /// for `$6`, replacing one already there.
    pub fn override_sql(&self) -> String {
        format!(
            "INSERT INTO {} AS o (flag, conversation_id, enabled, expires_at, created_by, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (flag, conversation_id) DO UPDATE SET enabled = EXCLUDED.enabled, \
             expires_at = EXCLUDED.expires_at, created_by = EXCLUDED.created_by, reason = EXCLUDED.reason, \
             created_at = now()",
            self.overrides.quoted()
        )
    }

    /// Removes the override of flag `$1` for conversation `$2`.
    pub fn clear_override_sql(&self) -> String {
        format!("DELETE FROM {} WHERE flag = $1 AND conversation_id = $2 RETURNING enabled", self.overrides.quoted())
    }

    /// The overrides of flag `$1` still in force at `$2` for conversations `$3` (NULL: all).
    pub fn overrides_sql(&self) -> String {
        format!(
            "SELECT conversation_id, enabled, expires_at FROM {} WHERE flag = $1 \
             AND (expires_at IS NULL OR expires_at > $2) AND ($3::text[] IS NULL OR conversation_id = ANY($3))",
            self.overrides.quoted()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_follow_the_flag_table_and_stay_quoted() {
        let t = FlagTables::of(&Table::parse("ops.flags").unwrap());
        assert_eq!(t.overrides.quoted(), "\"ops\".\"flags_overrides\"");
        assert_eq!(t.audit.quoted(), "\"ops\".\"flags_audit\"");
        let m = t.migration();
        assert!(m[0].starts_with("CREATE TABLE IF NOT EXISTS \"ops\".\"flags\""));
        assert!(m.iter().any(|s| s.contains("BEFORE UPDATE OR DELETE ON \"ops\".\"flags_audit\"")));
        assert!(m.last().unwrap().contains("'ENABLE_ABLY_REALTIME'"));
    }
}
