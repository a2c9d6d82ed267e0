//! Every SQL statement broker-ops runs against the Postgres mirror, built from the table contract.
//! The table name is a checked identifier, quoted, so nothing here is ever built from other input;
//! values always travel as bind parameters.

use super::Table;

/// The columns of the mirror table, in the order every read selects them.
pub const COLUMNS: &str = "id, conversation_id, channel, name, data, client_id, occurred_at";

/// Where each of [`COLUMNS`] is in a row: read by position, a million-row read skips a
/// name lookup per field.
pub mod col {
    pub const ID: usize = 0;
    pub const CONVERSATION_ID: usize = 1;
    pub const CHANNEL: usize = 2;
    pub const NAME: usize = 3;
    pub const DATA: usize = 4;
    pub const CLIENT_ID: usize = 5;
    pub const OCCURRED_AT: usize = 6;
}

/// The window every read filters on: `$1` since, `$2` until, `$3` conversation ids (or NULL).
const WINDOW: &str = "occurred_at >= $1 AND occurred_at < $2 AND ($3::text[] IS NULL OR conversation_id = ANY($3))";

/// Planner settings for the reads of one transaction: walk an index in key order rather than
/// sort, so that the plan does not depend on statistics (a restored or freshly bulk-loaded table
/// has none, and its guessed row counts made the planner sort the whole window instead).
pub const STABLE_PLAN: &[&str] = &["SET LOCAL enable_sort = off", "SET LOCAL enable_bitmapscan = off"];

/// The order a replay reads in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOrder {
    Time,
    Conversation,
}

/// Where a keyset read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Start,
    /// `$4` occurred_at, `$5` id (and `$6` conversation id in conversation order).
    Key,
}

impl Table {
    /// The statements of `broker-ops db migrate`: idempotent, in order.
    pub fn migration(&self) -> Vec<String> {
        let t = self.quoted();
        let n = &self.name;
        let schema = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema);
        let table = format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n    \
                id              text        PRIMARY KEY,\n    \
                conversation_id text        NOT NULL,\n    \
                channel         text        NOT NULL,\n    \
                name            text        NOT NULL,\n    \
                data            jsonb,\n    \
                client_id       text,\n    \
                occurred_at     timestamptz NOT NULL,\n    \
                mirrored_at     timestamptz NOT NULL DEFAULT now()\n)"
        );
        // Both in the exact key order the reads use (`ORDER BY ... , id` with row-value keysets),
        // so each read is an index walk from its keyset position.
        let by_conversation = format!(
            "CREATE INDEX IF NOT EXISTS \"{n}_conversation_occurred_id_idx\" ON {t} (conversation_id, occurred_at, id)"
        );
        let by_time = format!("CREATE INDEX IF NOT EXISTS \"{n}_occurred_id_idx\" ON {t} (occurred_at, id)");
        let mut out = vec![table, by_conversation, by_time];
        if self.schema != "public" {
            out.insert(0, schema);
        }
        out
    }

    /// Whether the table exists: one text parameter-free query, NULL when it does not.
    /// Its columns and their types (`udt_name`): binds `$1` schema, `$2` name.
    pub fn columns_sql() -> &'static str {
        "SELECT column_name::text, udt_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2"
    }

    pub fn exists_sql(&self) -> String {
        let literal = self.quoted().replace('\'', "''");
        format!("SELECT to_regclass('{literal}')::text")
    }

    /// Inserts from seven parallel arrays; ids already present are skipped.
    pub fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::jsonb[], $6::text[], $7::timestamptz[]) ON CONFLICT (id) DO NOTHING",
            self.quoted(),
            COLUMNS
        )
    }

    /// How many of the ids in `$1` are present.
    pub fn count_ids_sql(&self) -> String {
        format!("SELECT count(*) FROM {} WHERE id = ANY($1)", self.quoted())
    }

    /// Rows in the replay window.
    pub fn count_window_sql(&self) -> String {
        format!("SELECT count(*) FROM {} WHERE {WINDOW}", self.quoted())
    }

    /// One chunk of a replay: the window from a keyset position, in `order`, `LIMIT` the last
    /// parameter.
    pub fn read_sql(&self, order: ReadOrder, after: After) -> String {
        let (after, binds) = match (after, order) {
            (After::Start, _) => ("", 3),
            (After::Key, ReadOrder::Time) => ("AND (occurred_at, id) > ($4, $5)", 5),
            (After::Key, ReadOrder::Conversation) => ("AND (conversation_id, occurred_at, id) > ($6, $4, $5)", 6),
        };
        let by = match order {
            ReadOrder::Time => "occurred_at, id",
            ReadOrder::Conversation => "conversation_id, occurred_at, id",
        };
        let limit = binds + 1;
        format!("SELECT {COLUMNS} FROM {} WHERE {WINDOW} {after} ORDER BY {by} LIMIT ${limit}", self.quoted())
    }

    /// The newest event of conversation `$1`.
    pub fn newest_of_conversation_sql(&self) -> String {
        format!("SELECT max(occurred_at) FROM {} WHERE conversation_id = $1", self.quoted())
    }

    /// Conversations with an event in `[$1, $3)` whose id does not match the test-traffic `LIKE`
    /// pattern `$2` (the rollout's cohorts).
    pub fn active_ids_sql(&self) -> String {
        format!(
            "SELECT DISTINCT conversation_id FROM {} WHERE occurred_at >= $1 AND occurred_at < $3 \
             AND conversation_id NOT LIKE $2",
            self.quoted()
        )
    }

    /// Whether the mirror holds Ably message `$1` (`mirror canary`, `mirror webhook-test`).
    pub fn has_id_sql(&self) -> String {
        format!("SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1)", self.quoted())
    }

    /// Removes canary rows (conversation `$1`, event `$2`) that occurred before `$3`: only the
    /// canary's own conversation and event name, never anything else.
    pub fn trim_canary_sql(&self) -> String {
        format!("DELETE FROM {} WHERE conversation_id = $1 AND name = $2 AND occurred_at < $3", self.quoted())
    }

    /// `doctor`'s evidence: rows since `$1`, and the names and data of up to `$2` recent ones.
    pub fn recent_count_sql(&self) -> String {
        format!("SELECT count(*) FROM {} WHERE occurred_at >= $1", self.quoted())
    }

    pub fn recent_sample_sql(&self) -> String {
        format!(
            "SELECT channel, name, data FROM {} WHERE occurred_at >= $1 ORDER BY occurred_at DESC LIMIT $2",
            self.quoted()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_positions_match_the_column_list() {
        let names: Vec<&str> = COLUMNS.split(", ").collect();
        let at = [
            (col::ID, "id"),
            (col::CONVERSATION_ID, "conversation_id"),
            (col::CHANNEL, "channel"),
            (col::NAME, "name"),
            (col::DATA, "data"),
            (col::CLIENT_ID, "client_id"),
            (col::OCCURRED_AT, "occurred_at"),
        ];
        assert_eq!(names.len(), at.len());
        for (i, name) in at {
            assert_eq!(names[i], name);
        }
    }

    #[test]
    fn statements_use_the_quoted_table() {
        let t = Table::parse("ops.chat_log").unwrap();
        let m = t.migration();
        assert_eq!(m[0], "CREATE SCHEMA IF NOT EXISTS \"ops\"");
        assert!(m[1].starts_with("CREATE TABLE IF NOT EXISTS \"ops\".\"chat_log\" ("));
        assert!(m[2].contains("\"chat_log_conversation_occurred_id_idx\" ON \"ops\".\"chat_log\""));
        assert_eq!(t.exists_sql(), "SELECT to_regclass('\"ops\".\"chat_log\"')::text");
        assert!(t.read_sql(ReadOrder::Conversation, After::Key).ends_with(
            "AND (conversation_id, occurred_at, id) > ($6, $4, $5) ORDER BY conversation_id, occurred_at, id LIMIT $7"
        ));
        assert!(t.read_sql(ReadOrder::Time, After::Start).ends_with("ORDER BY occurred_at, id LIMIT $4"));
        assert_eq!(Table::parse("events_log").unwrap().migration().len(), 3, "no CREATE SCHEMA for public");
    }
}
