//! The spill file: JSON lines of entries not yet chained, imported by the writer when
//! it has caught up. Only the writer's and the overflow thread touch it, never the
//! request path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sluice_shared::audit::AuditEntry;

/// How often an idle writer retries importing spilled records.
pub(super) const IMPORT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct Spill {
    path: PathBuf,
    /// Serializes appends and rotations (the writer's and the overflow thread's: the
    /// request path never takes it).
    file: Mutex<()>,
    /// Set when a record is spilled (and at start), so the writer only looks for spill
    /// files when there can be some: the look costs blocking file-system calls.
    pending: AtomicBool,
    /// Woken by every append, so that an idle writer imports what the overflow thread
    /// spilled after the writer's last import (see [`Spill::import_due`]).
    spilled: tokio::sync::Notify,
    /// Records appended and fsynced (strict mode), for tests to see that an
    /// acknowledgement came after the sync.
    synced: AtomicU64,
}

impl Spill {
    pub(super) fn new(path: PathBuf) -> Self {
        Spill {
            path,
            file: Mutex::new(()),
            pending: AtomicBool::new(true),
            spilled: tokio::sync::Notify::new(),
            synced: AtomicU64::new(0),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entries` as JSON lines in one write. With `sync` (strict durability),
    /// they are on disk when this returns: the file is fsynced, and so is its directory
    /// when this call created the file (or the directory's parent, when it created the
    /// directory), so that the new name survives a power cut too. Creates the directory
    /// if it is missing, 0700, and the file 0600: spilled records are audit records.
    pub(super) fn append<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a AuditEntry>,
        sync: bool,
    ) -> std::io::Result<()> {
        let mut lines = Vec::new();
        let mut count = 0u64;
        for entry in entries {
            serde_json::to_writer(&mut lines, entry).map_err(std::io::Error::other)?;
            lines.push(b'\n');
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let _guard = self.lock();
        let (mut file, created) = self.open()?;
        file.write_all(&lines)?;
        if sync {
            file.sync_all()?;
            if let Some(created) = created {
                sync_dir(&created)?;
            }
            self.synced.fetch_add(count, Ordering::Relaxed);
        }
        self.pending.store(true, Ordering::Release);
        self.spilled.notify_one();
        Ok(())
    }

    /// Resolves when an idle writer should import: after [`IMPORT_RETRY`] while records
    /// wait for import (an import that failed, say on a locked database, is retried),
    /// otherwise as soon as something is spilled. Without it, records the overflow
    /// thread spills after the writer's last import would wait in the file for the next
    /// request, however long the gateway stays idle.
    pub(super) async fn import_due(&self) {
        if self.pending.load(Ordering::Acquire) {
            tokio::time::sleep(IMPORT_RETRY).await;
        } else {
            self.spilled.notified().await;
        }
    }

    /// Opens the file for appending, creating it (and its directory) if missing. The
    /// second value names the directory whose entries changed, if any did.
    fn open(&self) -> std::io::Result<(File, Option<PathBuf>)> {
        match OpenOptions::new().append(true).open(&self.path) {
            Ok(file) => return Ok((file, None)),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let dir = self.dir();
        let mut changed = dir.to_path_buf();
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(dir)?;
            // The new directory's own name lives in its parent.
            changed = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&self.path)?;
        #[cfg(unix)]
        {
            // The umask may have cleared bits of 0600 too.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok((file, Some(changed)))
    }

    /// Moves the current spill file aside for import (new spills start a fresh file) and
    /// returns every file waiting for import, oldest first.
    pub(super) fn take(&self) -> std::io::Result<Vec<PathBuf>> {
        let _guard = self.lock();
        let dir = self.dir();
        if !dir.exists() {
            // Nothing spilled yet: the directory is created with the first spill.
            return Ok(Vec::new());
        }
        if self.path.exists() && std::fs::metadata(&self.path)?.len() > 0 {
            let name = format!(
                "{}.{}.importing",
                self.path.display(),
                uuid::Uuid::now_v7().simple()
            );
            std::fs::rename(&self.path, &name)?;
        }
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

    /// Whether records may be waiting for import; clears the flag.
    pub(super) fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Records are waiting for import (an import that failed leaves them).
    pub(super) fn set_pending(&self) {
        self.pending.store(true, Ordering::Release);
    }

    /// Records appended with `sync` so far.
    #[cfg(test)]
    pub(super) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Relaxed)
    }

    /// Holds off every append and rotation while the guard lives (tests: a spill file
    /// that blocks).
    #[cfg(test)]
    pub(super) fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }
}

/// Fsyncs a directory, so that a file created (or renamed) in it keeps its name after a
/// power cut. Unix only: elsewhere directories cannot be opened for this.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
