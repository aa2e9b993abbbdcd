//! The spill file and the overload path.

use std::sync::Mutex;

use crate::governance::audit::bench::sample_entry;
use crate::governance::audit::spill::Spill;

/// Spilled records are audit records: owner only, whatever the umask.
#[cfg(unix)]
#[test]
fn spill_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spill = Spill {
        path: dir.path().join("spill.jsonl"),
        file: Mutex::new(()),
        pending: std::sync::atomic::AtomicBool::new(false),
    };
    spill.append(&sample_entry(1)).unwrap();
    let mode = std::fs::metadata(&spill.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "spill file mode {mode:o}");
    let taken = spill.take().unwrap();
    assert_eq!(taken.len(), 1);
    let mode = std::fs::metadata(&taken[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "file moved aside for import: {mode:o}");
}
