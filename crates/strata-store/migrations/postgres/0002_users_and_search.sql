-- Accounts, and full-text search over the catalog. Keep in step with
-- ../sqlite/0002_users_and_search.sql: the schema equivalence test compares the tables; the
-- search structures differ by nature and are compared only as "this table has full-text
-- search" (see strata_store::testing::Schema).

-- One row per account. `email` is stored lowercased by the application (the `Email` type), so
-- the UNIQUE constraint is case-insensitive in effect; `password_hash` is an argon2id PHC
-- string. Carts and orders reference `users (id)`.
CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY,
    email         TEXT        NOT NULL,
    display_name  TEXT        NOT NULL,
    password_hash TEXT        NOT NULL,
    role          TEXT        NOT NULL DEFAULT 'customer',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_role_check CHECK (role IN ('customer', 'support', 'admin'))
);

-- Full-text search: a generated tsvector over name (weight A) and description (weight B) with a
-- GIN index. Every run of characters other than letters and digits becomes a space before the
-- 'simple' configuration (lowercase, no stemming, no stop words) parses the text, so words are
-- split exactly as SQLite's unicode61 tokenizer splits them (PostgreSQL's parser would otherwise
-- keep `full-colour` or `a.b` whole besides their parts) and a query matches the same products
-- on both. The weights let a query ask for words of the name only (relevance order).
ALTER TABLE products ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple'::regconfig,
        regexp_replace(name, '[^[:alnum:]]+', ' ', 'g')), 'A')
    || setweight(to_tsvector('simple'::regconfig,
        regexp_replace(description, '[^[:alnum:]]+', ' ', 'g')), 'B')
) STORED;

CREATE INDEX products_search_idx ON products USING GIN (search);
