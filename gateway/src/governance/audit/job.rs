//! A record on its way to the writer.

use tokio::sync::oneshot;

use sluice_shared::audit::AuditEntry;

pub(super) struct Job {
    pub(super) entry: AuditEntry,
    pub(super) ack: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("request_id", &self.entry.request_id)
            .finish()
    }
}
