-- The Postgres mirror of every Ably channel message (DESIGN.md section 4, docs/contracts.md).
-- Writes are idempotent on the Ably message id: inserts use ON CONFLICT (id) DO NOTHING.
CREATE TABLE IF NOT EXISTS chat_events (
    id              text        PRIMARY KEY,
    conversation_id text        NOT NULL,
    channel         text        NOT NULL,
    name            text        NOT NULL,
    data            jsonb,
    client_id       text,
    occurred_at     timestamptz NOT NULL,
    mirrored_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS chat_events_conversation_occurred_idx ON chat_events (conversation_id, occurred_at);
CREATE INDEX IF NOT EXISTS chat_events_occurred_idx ON chat_events (occurred_at);
