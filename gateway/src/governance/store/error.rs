//! The store's error type.

/// A store failure, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error during {op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// From the audit writer's own synchronous connection.
    #[error("database error during {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// An audit record's request id is already stored (the unique index refused it).
    #[error("an audit record with one of these request ids is already stored")]
    DuplicateRequestId,
    /// A setting the store needs is unusable (the message names it).
    #[error("{0}")]
    Config(String),
    /// A file next to the database (the database itself, its `-wal`/`-shm`) could not be
    /// created or restricted.
    #[error("{what}: {source}")]
    File {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The audit writer's thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
