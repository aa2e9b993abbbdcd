//! The embedded store: one SQLite file in WAL mode.
//!
//! Migrations are a numbered list applied in order inside transactions and recorded in
//! `schema_migrations`; a database newer than this binary is refused rather than guessed
//! at. The audit table keeps each record's canonical JSON (what its hash covers) next to
//! indexed copies of the columns queries filter on; `audit verify` checks both.
//!
//! The database and its `-wal`/`-shm` hold every audit record and key hash, so they are
//! readable by the gateway's user only: a new database file is created 0600 whatever the
//! umask, and SQLite's unix VFS gives the `-wal` and `-shm` it creates the main file's
//! permissions (a test below holds it to that).

mod appender;
mod audit;
mod backend;
mod database;
mod migrations;
mod policy;
mod routing;
#[cfg(test)]
mod tests;

pub use database::SqliteStore;
