//! Governance entities: org → team → user/device → virtual key, plus budgets and rate
//! limits attached to any level. These are both the stored rows and the admin API's
//! JSON (the secret hash is never serialized out).

use serde::{Deserialize, Serialize};
use sluice_shared::audit::ContentLogging;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub team_id: String,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub team_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    pub hostname: String,
    pub created_ms: i64,
}

/// Who a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    User,
    Device,
    /// A team's service key (CI, a shared bot).
    Team,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::User => "user",
            OwnerKind::Device => "device",
            OwnerKind::Team => "team",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(OwnerKind::User),
            "device" => Some(OwnerKind::Device),
            "team" => Some(OwnerKind::Team),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Blocked,
}

/// What a key may reach and how much of its traffic is recorded.
///
/// Model patterns match the served `provider/model`, the requested alias, or the bare
/// model; `*` matches any run of characters (`openai/*`, `*mini*`). Deny wins over allow;
/// an empty allow list allows everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicy {
    /// Models the key may use, decided on where the request would really go: the
    /// provider and model of each candidate after routing (the alias target, the
    /// fallback), never on the name the client sent. A pattern with a `/` matches
    /// `provider/model` (`openai/*`, `anthropic/claude-*`); one without matches the model
    /// at any provider (`gpt-4o-mini`, `*-mini`). `*` matches any run of characters.
    /// Empty: every model not denied.
    #[serde(default)]
    pub allow_models: Vec<String>,
    /// Models the key may not use. Matched more widely than allows, so that a model
    /// cannot slip out of a deny under another name: against `provider/model`, the model
    /// alone (`openrouter/openai/gpt-4o` is denied by `openai/gpt-4o`) and the name the
    /// client sent (an alias can be denied by name).
    #[serde(default)]
    pub deny_models: Vec<String>,
    /// Provider names (`[providers.NAME]`) the key may use; empty: all.
    #[serde(default)]
    pub allow_providers: Vec<String>,
    /// Provider names the key may not use.
    #[serde(default)]
    pub deny_providers: Vec<String>,
    #[serde(default)]
    pub content_logging: ContentLogging,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtualKey {
    /// The public id (`sk-sluice-<id>-…`).
    pub id: String,
    pub name: String,
    #[serde(skip_serializing, default)]
    pub secret_hash: String,
    /// After a rotation, the old secret keeps working until `previous_expires_ms`.
    #[serde(skip_serializing, default)]
    pub previous_hash: Option<String>,
    #[serde(default)]
    pub previous_expires_ms: Option<i64>,
    pub owner_kind: OwnerKind,
    /// The user or device id; the team id for team keys.
    pub owner_id: String,
    pub team_id: String,
    pub status: KeyStatus,
    #[serde(default)]
    pub expires_ms: Option<i64>,
    #[serde(default)]
    pub policy: KeyPolicy,
    pub created_ms: i64,
}

/// The level a budget or limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Key,
    User,
    Device,
    Team,
    Org,
    /// Rate limits only: a model (`provider/model` as served, or an alias) across all keys.
    Model,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::User => "user",
            ScopeKind::Device => "device",
            ScopeKind::Team => "team",
            ScopeKind::Org => "org",
            ScopeKind::Model => "model",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "key" => Some(ScopeKind::Key),
            "user" => Some(ScopeKind::User),
            "device" => Some(ScopeKind::Device),
            "team" => Some(ScopeKind::Team),
            "org" => Some(ScopeKind::Org),
            "model" => Some(ScopeKind::Model),
            _ => None,
        }
    }
}

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetWindow {
    Hour,
    Day,
    Week,
    Month,
}

impl BudgetWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetWindow::Hour => "hour",
            BudgetWindow::Day => "day",
            BudgetWindow::Week => "week",
            BudgetWindow::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(BudgetWindow::Hour),
            "day" => Some(BudgetWindow::Day),
            "week" => Some(BudgetWindow::Week),
            "month" => Some(BudgetWindow::Month),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Budget {
    pub id: String,
    pub scope_kind: ScopeKind,
    pub scope_id: String,
    pub window: BudgetWindow,
    /// Rolling (the last hour/day/7 days/30 days) instead of calendar-aligned (UTC).
    #[serde(default)]
    pub rolling: bool,
    pub limit_usd: f64,
    /// Fraction of the limit at which a soft-limit event is raised. Default 0.8.
    #[serde(default = "default_soft")]
    pub soft_fraction: f64,
    pub created_ms: i64,
}

fn default_soft() -> f64 {
    0.8
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateLimit {
    pub id: String,
    pub scope_kind: ScopeKind,
    pub scope_id: String,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub concurrency: Option<u64>,
    pub created_ms: i64,
}

/// Matches `pattern` (with `*` wildcards) against `text`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(glob_match("*mini*", "openai/gpt-4o-mini-2024"));
        assert!(glob_match("*-mini", "gpt-4o-mini"));
        assert!(!glob_match("openai/*", "anthropic/claude"));
        assert!(glob_match("gpt-4o", "gpt-4o"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
