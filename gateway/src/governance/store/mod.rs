//! Persistent state behind one trait, so that PostgreSQL (and Redis for counters) can be
//! added for multi-replica deployments without touching the request path: nothing on the
//! request path calls the store — it reads the in-memory snapshot, and the audit writer
//! and admin API are the only callers.

mod audit;
mod backend;
mod error;
mod policy;
pub mod sqlite;

pub use audit::{
    AuditAppender, AuditDuplicates, AuditFilter, AuditHead, ChainRow, ChainedRecord, HeadSeal,
    UsageGroup, UsageRow,
};
pub use backend::Store;
pub use error::{StoreError, StoreResult};
pub use policy::{Entity, PolicyRows};
