-- Accounts, and full-text search over the catalog. Keep in step with
-- ../postgres/0002_users_and_search.sql: the schema equivalence test compares the tables; the
-- search structures differ by nature and are compared only as "this table has full-text
-- search" (see strata_store::testing::Schema).

-- One row per account. `email` is stored lowercased by the application (the `Email` type), so
-- the UNIQUE constraint is case-insensitive in effect; `password_hash` is an argon2id PHC
-- string. Carts and orders reference `users (id)`.
CREATE TABLE users (
    id            INTEGER  NOT NULL CONSTRAINT users_pkey PRIMARY KEY AUTOINCREMENT,
    email         TEXT     NOT NULL,
    display_name  TEXT     NOT NULL,
    password_hash TEXT     NOT NULL,
    role          TEXT     NOT NULL DEFAULT 'customer',
    created_at    DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_role_check CHECK (role IN ('customer', 'support', 'admin'))
);

-- Full-text search: an external-content FTS5 table over products (name, description), kept in
-- step by triggers. Tokenizer `unicode61 remove_diacritics 0`: words are runs of letters and
-- digits, lowercased, accents kept; PostgreSQL's side is built to split and fold the same way
-- (non-alphanumerics to spaces, then the 'simple' configuration), so a query matches the same
-- products on both.
CREATE VIRTUAL TABLE products_fts USING fts5 (
    name,
    description,
    content = 'products',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, name, description)
    VALUES (new.id, new.name, new.description);
END;

CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description)
    VALUES ('delete', old.id, old.name, old.description);
END;

CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description)
    VALUES ('delete', old.id, old.name, old.description);
    INSERT INTO products_fts (rowid, name, description)
    VALUES (new.id, new.name, new.description);
END;

-- Index the products that existed before this migration.
INSERT INTO products_fts (products_fts) VALUES ('rebuild');
