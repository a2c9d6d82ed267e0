//! The SQL of `sla report`: pairing, bucketing and counting done in Postgres, so that a few
//! thousand rows cross the wire whatever the size of the window (docs/sla-report.md explains
//! every step).
//!
//! One statement, run once per partition of the conversations (`hashtext(conversation_id)`
//! modulo the partition count), each on its own connection: the partitions share no
//! conversation, so their results add up exactly on the client.
//!
//! 1. `ev`: the four contract events of the window, each with its pairing key: a customer
//!    message's `messageId`, a reply's reply field, an SLA event's `messageId` (so it lands with
//!    the message it is about). A row without a key gets its own (`chr(30) || id`) and is counted
//!    as malformed (an id that itself starts with `chr(30)` would be too: no real id does).
//! 2. `g`: one row per (conversation, key): the message's time, its first reply's time and the
//!    counts. The grouping leads with a 64-bit hash of the key, so the sort compares integers.
//!    (Under `first-after`, a window over each conversation in time order gives every customer
//!    message the first reply at or after it instead.)
//! 3. `s`: each message's latency in microseconds when answered within the reply time-out,
//!    else unanswered (its time-out ran out inside the window) or pending; the bucket of its time.
//! 4. `hist`: answered messages per (synthetic, bucket, HDR value); `agg`: the counts per
//!    (synthetic, bucket) and per (synthetic, conversation), as grouping sets.
//!    The HDR value is the latency rounded down to a value of the same bucket of an HDR histogram
//!    of 3 significant digits (values below 2048 µs exact; above, 11 significant bits), so the
//!    client records each row's count at that value and gets the histogram it would have built
//!    from every latency.
//! 5. Out: the histogram rows (kind 0), the conversation counts (kind 1), the worst
//!    conversations (kind 2), the bucket counts (kind 3).

use super::Table;

/// A re-sent copy (`events replay --to ably` publishes `replay-<original id>`): kept out of every
/// figure (a message and its reply count once; a copy's time is the replay's, not the
/// customer's) and counted apart.
/// (`super::REPLAY_ID_PREFIX`, a test proves they agree.)
const COPY: &str = "id LIKE 'replay-%'";

/// How a reply is matched to its message (from [`super::ReplyMatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// `$15` is the reply field.
    Field,
    FirstAfter,
}

/// The HDR value of `us` (see the module documentation).
const HDR: &str = "CASE WHEN us < 2048 THEN us \
     ELSE (us >> (floor(ln(us::float8) / ln(2.0))::int - 10)) << (floor(ln(us::float8) / ln(2.0))::int - 10) END";

impl Table {
    /// The report statement (module documentation). Binds: `$1` since, `$2` until, `$3` bucket
    /// width (s), `$4` reply time-out (s), `$5` SLO (µs), `$6` test-traffic `LIKE` pattern (NULL: nothing is test traffic), `$7`
    /// conversations (or NULL), `$8` partitions, `$9` this partition, `$10`..`$13` the user, AI,
    /// warning and violation event names, `$14` how many worst conversations, `$15` the reply
    /// field ([`Pairing::Field`] only: a statement binds exactly the parameters it uses). Columns out: `kind, synthetic, b, v, c, answered, over,
    /// messages, duplicates, replies, unpaired, unanswered, pending, warnings, violations,
    /// keyless_messages, keyless_replies, max_us, copies`.
    pub fn report_sql(&self, pairing: Pairing) -> String {
        let groups = match pairing {
            Pairing::Field => self.groups_by_field(),
            Pairing::FirstAfter => self.groups_first_after(),
        };
        format!("WITH {groups}, {}", steps())
    }

    fn window_filter(&self) -> String {
        format!(
            "FROM {} WHERE occurred_at >= $1 AND occurred_at < $2 AND name IN ($10, $11, $12, $13) \
             AND ($7::text[] IS NULL OR conversation_id = ANY($7)) \
             AND ($8 <= 1 OR mod(hashtext(conversation_id) & 2147483647, $8) = $9)",
            self.quoted()
        )
    }

    fn groups_by_field(&self) -> String {
        // Narrow rows for the sort: the kind as a small integer, the key with a row's own id
        // standing in when it has none (`keyless`), no payload. `OFFSET 0` makes Postgres
        // compute these before sorting; otherwise it carries `data` through the sort to
        // evaluate `marked` in the aggregate, and the sort spills twice as much.
        format!(
            "ev AS (\
               SELECT conversation_id AS c, occurred_at AS at, \
                 CASE name WHEN $10 THEN 1 WHEN $11 THEN 2 WHEN $12 THEN 3 ELSE 4 END AS kind, \
                 coalesce(CASE WHEN name = $11 THEN data->>$15::text ELSE data->>'messageId' END, chr(30) || id) AS k, \
                 coalesce(name = $10 AND data->>'echoId' LIKE $6, false) AS marked, {COPY} AS copy \
               {} OFFSET 0), \
             g AS (\
               SELECT c, min(at) FILTER (WHERE kind = 1 AND NOT copy) AS msg_at, \
                 count(*) FILTER (WHERE kind = 1 AND NOT copy) AS msgs, \
                 min(at) FILTER (WHERE kind = 2 AND NOT copy) AS reply_at, \
                 count(*) FILTER (WHERE kind = 2 AND NOT copy) AS replies, \
                 count(*) FILTER (WHERE kind = 3 AND NOT copy) AS warnings, \
                 count(*) FILTER (WHERE kind = 4 AND NOT copy) AS violations, \
                 coalesce(min(at) FILTER (WHERE NOT copy), min(at)) AS first_at, \
                 bool_or(marked) OR coalesce(c LIKE $6, false) AS synthetic, k LIKE chr(30) || '%' AS keyless, \
                 CASE WHEN count(*) FILTER (WHERE kind = 1 AND NOT copy) = 0 \
                   THEN count(*) FILTER (WHERE kind = 2 AND NOT copy) ELSE 0 END AS unpaired, \
                 count(*) FILTER (WHERE copy) AS copies \
               FROM ev \
               GROUP BY hashtextextended(c || chr(31) || k, 0), c, k)",
            self.window_filter()
        )
    }

    fn groups_first_after(&self) -> String {
        format!(
            "ev AS (\
               SELECT conversation_id AS c, name, occurred_at AS at, \
                 coalesce(name = $10 AND data->>'echoId' LIKE $6, false) AS marked, {COPY} AS copy \
               {}), \
             w AS (\
               SELECT c, name, at, copy, \
                 min(at) FILTER (WHERE name = $11 AND NOT copy) OVER (PARTITION BY c ORDER BY at DESC, name = $10 \
                   ROWS UNBOUNDED PRECEDING) AS next_reply_at, \
                 bool_or(marked) OVER (PARTITION BY c) AS conversation_marked \
               FROM ev), \
             g AS (\
               SELECT c, CASE WHEN name = $10 AND NOT copy THEN at END AS msg_at, \
                 (name = $10 AND NOT copy)::int::bigint AS msgs, \
                 CASE WHEN copy THEN NULL WHEN name = $10 THEN next_reply_at WHEN name = $11 THEN at END AS reply_at, \
                 (name = $11 AND NOT copy)::int::bigint AS replies, (name = $12 AND NOT copy)::int::bigint AS warnings, \
                 (name = $13 AND NOT copy)::int::bigint AS violations, at AS first_at, \
                 conversation_marked OR coalesce(c LIKE $6, false) AS synthetic, false AS keyless, 0::bigint AS unpaired, \
                 copy::int::bigint AS copies \
               FROM w)",
            self.window_filter()
        )
    }
}

/// Steps 3 to 5, the same under both pairings (`g` has the same columns under both).
fn steps() -> String {
    format!(
        "s AS (\
           SELECT c, synthetic, keyless, msgs, replies, unpaired, warnings, violations, copies, \
             floor(date_part('epoch', coalesce(msg_at, first_at) - $1) / $3)::int AS b, \
             CASE WHEN msgs > 0 AND NOT keyless AND reply_at IS NOT NULL AND reply_at <= msg_at + $4 * interval '1 second' \
               THEN least(greatest((date_part('epoch', reply_at - msg_at) * 1000000)::bigint, 1), 3600000000) END AS us, \
             msgs > 0 AND NOT keyless AND (reply_at IS NULL OR reply_at > msg_at + $4 * interval '1 second') \
               AND msg_at + $4 * interval '1 second' <= $2 AS unanswered, \
             msgs > 0 AND NOT keyless AND reply_at IS NULL AND msg_at + $4 * interval '1 second' > $2 AS pending \
           FROM g), \
         hist AS (\
           SELECT synthetic, b, {HDR} AS v, count(*) AS answered, count(*) FILTER (WHERE us > $5) AS over \
           FROM s WHERE us IS NOT NULL GROUP BY 1, 2, 3), \
         agg AS (\
           SELECT GROUPING(c) AS per_bucket, synthetic, b, c, \
             coalesce(sum(least(msgs, 1)) FILTER (WHERE NOT keyless), 0)::bigint AS messages, \
             coalesce(sum(msgs - 1) FILTER (WHERE msgs > 1 AND NOT keyless), 0)::bigint AS duplicates, \
             coalesce(sum(replies) FILTER (WHERE NOT keyless), 0)::bigint AS replies, \
             coalesce(sum(unpaired) FILTER (WHERE NOT keyless), 0)::bigint AS unpaired, \
             count(*) FILTER (WHERE unanswered) AS unanswered, count(*) FILTER (WHERE pending) AS pending, \
             coalesce(sum(warnings), 0)::bigint AS warnings, coalesce(sum(violations), 0)::bigint AS violations, \
             coalesce(sum(msgs) FILTER (WHERE keyless), 0)::bigint AS keyless_messages, \
             coalesce(sum(replies) FILTER (WHERE keyless), 0)::bigint AS keyless_replies, \
             count(*) FILTER (WHERE us > $5) AS over, max(us) AS max_us, coalesce(sum(copies), 0)::bigint AS copies \
           FROM s GROUP BY GROUPING SETS ((synthetic, b), (synthetic, c))) \
         SELECT 0 AS kind, synthetic, b, v, NULL::text AS c, answered, over, 0::bigint AS messages, 0::bigint AS duplicates, \
           0::bigint AS replies, 0::bigint AS unpaired, 0::bigint AS unanswered, 0::bigint AS pending, 0::bigint AS warnings, \
           0::bigint AS violations, 0::bigint AS keyless_messages, 0::bigint AS keyless_replies, NULL::bigint AS max_us, \
           0::bigint AS copies \
         FROM hist \
         UNION ALL \
         SELECT 3, synthetic, b, NULL, NULL, 0, 0, messages, duplicates, replies, unpaired, unanswered, pending, \
           warnings, violations, keyless_messages, keyless_replies, max_us, copies \
         FROM agg WHERE per_bucket = 1 \
         UNION ALL \
         SELECT 1, synthetic, NULL, NULL, NULL, count(*), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0 \
         FROM agg WHERE per_bucket = 0 GROUP BY synthetic \
         UNION ALL \
         (SELECT 2, synthetic, NULL, NULL, c, 0, over, messages, duplicates, replies, unpaired, \
           unanswered, pending, warnings, violations, keyless_messages, keyless_replies, max_us, copies \
          FROM agg WHERE per_bucket = 0 AND NOT synthetic AND (max_us IS NOT NULL OR unanswered > 0) \
          ORDER BY unanswered > 0 DESC, max_us DESC NULLS LAST, c LIMIT $14)"
    )
}

/// Conversations with an event in `[$1, $2)`: `(test traffic?, count)` rows. Test traffic as in
/// the report: the id, or a customer message's `echoId` (`$4` = event_user), starts with `$3`
/// (NULL: nothing is test traffic).
impl Table {
    pub fn active_sql(&self) -> String {
        format!(
            "SELECT synthetic, count(*) FROM (\
               SELECT conversation_id, coalesce(bool_or(conversation_id LIKE $3 OR (name = $4 AND data->>'echoId' LIKE $3)), false) AS synthetic \
               FROM {} WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY conversation_id) x GROUP BY synthetic",
            self.quoted()
        )
    }
}

/// The typing and read events of the window, counted apart from messages: `(name, test
/// traffic?, count)` rows. Binds: `$1` since, `$2` until, `$3` test-traffic `LIKE` pattern (NULL:
/// nothing is), `$4` event_user, `$5` the extras' names, `$6` conversations (or NULL). Re-sent
/// copies are left out, as in the report.
impl Table {
    pub fn extras_sql(&self) -> String {
        let t = self.quoted();
        format!(
            "WITH conv AS (\
               SELECT conversation_id, coalesce(bool_or(conversation_id LIKE $3 OR (name = $4 AND data->>'echoId' LIKE $3)), false) AS synthetic \
               FROM {t} WHERE occurred_at >= $1 AND occurred_at < $2 AND ($6::text[] IS NULL OR conversation_id = ANY($6)) \
               GROUP BY conversation_id) \
             SELECT e.name, conv.synthetic, count(*) FROM {t} e JOIN conv USING (conversation_id) \
             WHERE e.occurred_at >= $1 AND e.occurred_at < $2 AND e.name = ANY($5) AND NOT (e.{COPY}) \
             GROUP BY e.name, conv.synthetic"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_pairings_bind_the_same_parameters_and_name_the_quoted_table() {
        let t = Table::parse("ops.chat_log").unwrap();
        let field = t.report_sql(Pairing::Field);
        let first = t.report_sql(Pairing::FirstAfter);
        if std::env::var_os("PRINT_REPORT_SQL").is_some() {
            println!("{field}");
        }
        for sql in [&field, &first] {
            assert!(sql.contains("FROM \"ops\".\"chat_log\" WHERE occurred_at >= $1 AND occurred_at < $2"));
            assert!(sql.contains("LIMIT $14"));
            assert!(sql.starts_with("WITH ev AS ("));
        }
        assert!(field.contains("data->>$15::text"));
        assert!(!first.contains("$15"), "first-after binds no reply field");
        assert_eq!(COPY, format!("id LIKE '{}%'", super::super::REPLAY_ID_PREFIX));
        assert!(t.active_sql().contains("FROM \"ops\".\"chat_log\" WHERE occurred_at >= $1"));
    }
}
