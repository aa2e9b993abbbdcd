//! `[governance.audit]`: the writer's settings.

use serde::Deserialize;

use sluice_shared::audit::ChainKey;

use crate::env::Environment;

/// `[governance.audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `buffered` (default): batches commit every `flush_interval_ms`; a crash can lose
    /// only the batch in memory. `strict`: a response completes only after its record is
    /// committed and fsynced.
    #[serde(default)]
    pub durability: Durability,
    /// Records queued for the writer before new ones spill to disk. Default 65536. The
    /// overflow queue to the spill file holds as many again; what neither holds is lost
    /// (buffered) or waits for room (strict).
    #[serde(default = "default_capacity")]
    pub channel_capacity: usize,
    /// Records per transaction, at most. Default 2048.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// Longest a record waits for its batch to fill. Default 20 ms. Buffered only:
    /// strict durability commits at once, and a batch is whatever queued during the
    /// previous commit's fsync.
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    /// Spill file for overload. Default: next to the database, `<database>.spill.jsonl`.
    #[serde(default)]
    pub spill_path: Option<String>,
    /// Bodies in `full` content records are cut at this many bytes. Default 65536.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Seals the audit chain with HMAC-SHA256 under this key, so that `audit verify`
    /// (given the same key) detects a deleted tail with a rewritten head, which the plain
    /// hash chain cannot. A secret reference, `env:SLUICE_AUDIT_KEY` or
    /// `file:/run/secrets/sluice-audit-key`, of at least 32 bytes (`openssl rand -hex 32`).
    /// It protects only if whoever can write the database cannot read it: keep it out of
    /// the database's directory and backups. Records written before it was set stay
    /// unsealed; changing it makes records sealed under the old key fail verification.
    /// Default: none (the plain chain; `audit verify` says the MACs were not checked).
    #[serde(default)]
    pub hmac_key: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            durability: Durability::default(),
            channel_capacity: default_capacity(),
            batch_max: default_batch(),
            flush_interval_ms: default_flush(),
            spill_path: None,
            max_body_bytes: default_body(),
            hmac_key: None,
        }
    }
}

impl AuditConfig {
    /// Resolves `hmac_key` (`None` when unset). The error names the setting and never
    /// contains the key.
    pub fn chain_key(&self, env: &dyn Environment) -> Result<Option<ChainKey>, String> {
        self.resolve_chain_key(env)
            .map_err(|e| format!("governance.audit.hmac_key: {e}"))
    }

    /// [`Self::chain_key`] with an error that does not name the setting (for the
    /// config check, which reports it under its path).
    pub(super) fn resolve_chain_key(
        &self,
        env: &dyn Environment,
    ) -> Result<Option<ChainKey>, String> {
        let Some(reference) = &self.hmac_key else {
            return Ok(None);
        };
        let secret = crate::secret::resolve(reference, env)?;
        ChainKey::new(secret.expose().as_bytes()).map(Some)
    }
}

fn default_capacity() -> usize {
    65_536
}
fn default_batch() -> usize {
    2048
}
fn default_flush() -> u64 {
    20
}
fn default_body() -> usize {
    65_536
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    #[default]
    Buffered,
    Strict,
}
