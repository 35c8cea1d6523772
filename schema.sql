-- glarelite catalog schema, version 4 (2: the change journal; 3: listing indexes, id DESC;
-- 4: a create writes its own journal entry, no trigger on the artifact insert).
-- The single source of the catalog's tables. glarelite applies it to a new file and records
-- the version in PRAGMA user_version; glarelite/_db.py migrates older files forward (MIGRATIONS).
-- Timestamps are UTC ISO 8601 text with microseconds ("2026-01-02T03:04:05.123456Z"),
-- so text order is time order.

-- Catalog-wide settings (storage URL, allow-list, size caps), one JSON value per key.
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Artifact type definitions. `definition` is JSON: blob fields, blob-dict fields and
-- property fields with their kinds and options (see glarelite/types.py).
CREATE TABLE IF NOT EXISTS artifact_types (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS artifacts (
    id           TEXT PRIMARY KEY,
    type_name    TEXT NOT NULL REFERENCES artifact_types(name),
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,             -- canonical semver, build metadata included
    version_key  TEXT NOT NULL,             -- precedence key: text order = semver order (no build)
    owner        TEXT NOT NULL,
    visibility   TEXT NOT NULL CHECK (visibility IN ('private', 'public')),
    status       TEXT NOT NULL CHECK (status IN ('drafted', 'active', 'deactivated', 'deleted')),
    description  TEXT NOT NULL DEFAULT '',
    tags         TEXT NOT NULL DEFAULT '[]', -- JSON list, sorted; artifact_tags indexes it
    properties   TEXT NOT NULL DEFAULT '{}', -- JSON object; artifact_props indexes it
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    activated_at TEXT
) WITHOUT ROWID;

-- Glare's uniqueness: private artifacts per (type, owner, name, version); public ones per
-- (type, name, version) whatever the owner. Partial unique indexes make it hold under
-- concurrent writers without a lock. An artifact being deleted no longer blocks a twin.
CREATE UNIQUE INDEX IF NOT EXISTS artifacts_unique_private
    ON artifacts (type_name, owner, name, version)
    WHERE visibility = 'private' AND status != 'deleted';
CREATE UNIQUE INDEX IF NOT EXISTS artifacts_unique_public
    ON artifacts (type_name, name, version)
    WHERE visibility = 'public' AND status != 'deleted';
-- Read backwards, these are the default listing order (created_at DESC, id ASC), so every
-- page of it is an index range: with id ascending they read as created_at DESC, id DESC
-- and each group of equal created_at was sorted in a temporary B-tree, a million rows per
-- page when a million artifacts share one timestamp. created_at stays ascending: a new
-- artifact is appended at the end (created_at DESC made the indexes 1.7x larger and
-- creates ~14% slower, new entries landing at the front).
CREATE INDEX IF NOT EXISTS artifacts_by_type_created ON artifacts (type_name, created_at, id DESC);
CREATE INDEX IF NOT EXISTS artifacts_by_created ON artifacts (created_at, id DESC);
-- The query builder names this index (INDEXED BY) for name filters: keep its name.
CREATE INDEX IF NOT EXISTS artifacts_by_name ON artifacts (type_name, name, version_key);
-- Counts (Page.total) of a type by status and visibility read only this index:
-- 1.1 s -> 14 ms on 1,000,000 artifacts.
CREATE INDEX IF NOT EXISTS artifacts_scope ON artifacts (type_name, status, visibility, owner);

CREATE TABLE IF NOT EXISTS artifact_tags (
    artifact_id TEXT NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    tag         TEXT NOT NULL,
    PRIMARY KEY (artifact_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifact_tags_by_tag ON artifact_tags (tag, artifact_id);

-- One row per scalar property, per list element (position >= 0) and per dict entry
-- (key != ''). `value` has no declared type on purpose: SQLite keeps integers, reals and
-- text as they are bound, so one indexed column filters and sorts every kind.
CREATE TABLE IF NOT EXISTS artifact_props (
    artifact_id TEXT NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    key         TEXT NOT NULL DEFAULT '',
    position    INTEGER NOT NULL DEFAULT -1,
    value,
    PRIMARY KEY (artifact_id, name, key, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifact_props_by_value ON artifact_props (name, value);

-- One row per blob: a blob field (key = '') or a blob-dict entry (key != '').
-- Internal blobs live in storage under their digest; external ones at `location`.
CREATE TABLE IF NOT EXISTS blobs (
    artifact_id   TEXT NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    field         TEXT NOT NULL,
    key           TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('saving', 'active')),
    external      INTEGER NOT NULL DEFAULT 0,
    size          INTEGER,
    digest        TEXT,                      -- 'sha256:<hex>': the algorithm travels with the hash
    checksums     TEXT NOT NULL DEFAULT '{}',-- extra algorithms asked for at upload, JSON
    content_type  TEXT NOT NULL DEFAULT 'application/octet-stream',
    location      TEXT,                      -- external: the URL as registered
    final_url     TEXT,                      -- external: the URL after redirects
    etag          TEXT,
    last_modified TEXT,
    verified_at   TEXT,
    upstream      TEXT NOT NULL DEFAULT 'ok' CHECK (upstream IN ('ok', 'changed', 'unreachable')),
    reserved      INTEGER NOT NULL DEFAULT 0,-- saving: bytes declared by the upload (quotas)
    upload_token  TEXT,                      -- set while saving: which upload owns the slot
    previous      TEXT,                      -- JSON of the blob a saving upload replaces
    previous_digest TEXT,                    -- its internal digest: still referenced until done
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (artifact_id, field, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_by_digest ON blobs (digest) WHERE external = 0;
CREATE INDEX IF NOT EXISTS blobs_by_previous ON blobs (previous_digest)
    WHERE previous_digest IS NOT NULL;
CREATE INDEX IF NOT EXISTS blobs_saving ON blobs (status, updated_at) WHERE status = 'saving';

-- Quotas: at most max_artifacts artifacts and max_bytes of internal blob bytes, for the
-- whole catalog (scope 'global', target ''), one type or one owner. NULL: no limit.
CREATE TABLE IF NOT EXISTS quotas (
    scope         TEXT NOT NULL CHECK (scope IN ('global', 'type', 'owner')),
    target        TEXT NOT NULL DEFAULT '',
    max_artifacts INTEGER,
    max_bytes     INTEGER,
    PRIMARY KEY (scope, target)
);

-- The change journal (schema version 2): one row per write that changes what a mirror
-- could publish, numbered by a serial that only grows. Triggers fill it, so no write path
-- can forget it, except for a create: Catalog.create writes its entry itself
-- (_journal.record, schema version 4; tests/test_journal.py checks that every insert into
-- artifacts does). Any trigger on the artifact insert, even an empty one, makes SQLite
-- keep a statement journal for it (a copy of every page the insert changes, spilled to a
-- temporary file when it outgrows 64 KiB): with it a catalog made 0.89x the creates/s of
-- one without a journal, without it 0.96x (bench/catalog.py --compare-journal).
-- The serial is the rowid, allocated as max + 1 inside the write
-- transaction; SQLite has one writer at a time, so serials become visible in order: a
-- reader never sees N+1 without N. Not AUTOINCREMENT: its sqlite_sequence row is one more
-- page written by every commit (~3% of creates/s, bench/catalog.py --compare-journal);
-- instead trimming never deletes the newest row, so max + 1 never goes back.
-- Trimming (Catalog.trim_journal) records in settings ('journal_since') the serial after
-- which every change is still here, so a reader from before it learns to walk everything.
CREATE TABLE IF NOT EXISTS changes (
    serial      INTEGER PRIMARY KEY,
    artifact_id TEXT NOT NULL,
    type_name   TEXT NOT NULL,
    at          TEXT NOT NULL
);

-- Every column of an artifact is in its show view: every insert (journaled by the create,
-- see above), update and delete counts. `at` is the time the write stamped on the row
-- (updated_at; its format, microseconds), or the current time for a delete: the stamp is
-- already there, SQLite's strftime on every write cost ~5% of creates/s.
CREATE TRIGGER IF NOT EXISTS journal_artifact_update AFTER UPDATE ON artifacts
BEGIN
    INSERT INTO changes (artifact_id, type_name, at) VALUES (new.id, new.type_name, new.updated_at);
END;
CREATE TRIGGER IF NOT EXISTS journal_artifact_delete AFTER DELETE ON artifacts
BEGIN
    INSERT INTO changes (artifact_id, type_name, at)
    VALUES (old.id, old.type_name, strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'));
END;

-- Blob rows: every state counts, `saving` included (a few more rows per upload, never a
-- missed one), except an update that changes only verified_at: check() refreshes it on
-- every blob it finds unchanged, and journaling that would make each check re-publish
-- every external artifact. A blob deleted with its artifact (ON DELETE CASCADE) finds
-- no artifact row and adds nothing: the artifact's own delete is journaled.
CREATE TRIGGER IF NOT EXISTS journal_blob_insert AFTER INSERT ON blobs
BEGIN
    INSERT INTO changes (artifact_id, type_name, at)
    SELECT id, type_name, new.updated_at FROM artifacts WHERE id = new.artifact_id;
END;
CREATE TRIGGER IF NOT EXISTS journal_blob_update AFTER UPDATE ON blobs
WHEN old.artifact_id IS NOT new.artifact_id OR old.field IS NOT new.field
    OR old.key IS NOT new.key OR old.status IS NOT new.status
    OR old.external IS NOT new.external OR old.size IS NOT new.size
    OR old.digest IS NOT new.digest OR old.checksums IS NOT new.checksums
    OR old.content_type IS NOT new.content_type OR old.location IS NOT new.location
    OR old.final_url IS NOT new.final_url OR old.etag IS NOT new.etag
    OR old.last_modified IS NOT new.last_modified OR old.upstream IS NOT new.upstream
    OR old.reserved IS NOT new.reserved OR old.upload_token IS NOT new.upload_token
    OR old.previous IS NOT new.previous OR old.previous_digest IS NOT new.previous_digest
    OR old.created_at IS NOT new.created_at OR old.updated_at IS NOT new.updated_at
BEGIN
    INSERT INTO changes (artifact_id, type_name, at)
    SELECT id, type_name, new.updated_at FROM artifacts WHERE id IN (old.artifact_id, new.artifact_id);
END;
CREATE TRIGGER IF NOT EXISTS journal_blob_delete AFTER DELETE ON blobs
BEGIN
    INSERT INTO changes (artifact_id, type_name, at)
    SELECT id, type_name, strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')
    FROM artifacts WHERE id = old.artifact_id;
END;
