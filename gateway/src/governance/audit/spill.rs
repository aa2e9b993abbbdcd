//! The overload file: JSON lines of entries not yet chained.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sluice_shared::audit::AuditEntry;

/// The overload file: JSON lines of entries not yet chained.
#[derive(Debug)]
pub(super) struct Spill {
    pub(super) path: PathBuf,
    /// Serializes appends and rotations.
    pub(super) file: Mutex<()>,
    /// Set when a record is spilled (and at start), so the writer only looks for spill
    /// files when there can be some: the look costs blocking file-system calls.
    pub(super) pending: std::sync::atomic::AtomicBool,
}

impl Spill {
    pub(super) fn append(&self, entry: &AuditEntry) -> std::io::Result<()> {
        let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        let _guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Spilled records are audit records: owner only, like the database.
            options.mode(0o600);
        }
        let mut f = options.open(&self.path)?;
        #[cfg(unix)]
        if f.metadata()?.len() == 0 {
            // Just created (or empty): the umask may have cleared bits of 0600 too.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")?;
        f.flush()?;
        self.pending
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Moves the current spill file aside for import (new spills start a fresh file) and
    /// returns every file waiting for import, oldest first.
    pub(super) fn take(&self) -> std::io::Result<Vec<PathBuf>> {
        let _guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if self.path.exists() && std::fs::metadata(&self.path)?.len() > 0 {
            let name = format!(
                "{}.{}.importing",
                self.path.display(),
                uuid::Uuid::now_v7().simple()
            );
            std::fs::rename(&self.path, &name)?;
        }
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let prefix = format!(
            "{}.",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                name.starts_with(&prefix) && name.ends_with(".importing")
            })
            .collect();
        // uuid v7 names sort by creation time.
        files.sort();
        Ok(files)
    }
}

pub(super) fn spill_or_lose(spill: &Spill, entry: &AuditEntry) {
    match spill.append(entry) {
        Ok(()) => metrics::counter!("sluice_audit_spilled_total").increment(1),
        Err(e) => {
            metrics::counter!("sluice_audit_lost_total").increment(1);
            tracing::error!(request_id = %entry.request_id, error = %e, path = %spill.path.display(), "audit record lost: the writer queue is full and the spill file cannot be written");
        }
    }
}
