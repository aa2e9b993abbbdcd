//! Who is calling, and the in-memory policy a request is checked against: keys,
//! budgets and limits as of the last change, swapped whole.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{KeyPolicy, OwnerKind, RateLimit, ScopeKind, VirtualKey};
use super::scope::{Scoped, ScopedRef};
use super::store::PolicyRows;

/// Who is calling: resolved from a virtual key.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub key_id: String,
    pub key_name: String,
    pub team_id: String,
    pub org_id: String,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub policy: KeyPolicy,
}

impl Identity {
    /// The (scope, id) pairs budgets and limits may attach to, most specific first.
    pub(super) fn scopes(&self) -> Vec<(ScopeKind, &str)> {
        let mut s = vec![(ScopeKind::Key, self.key_id.as_str())];
        if let Some(u) = &self.user_id {
            s.push((ScopeKind::User, u));
        }
        if let Some(d) = &self.device_id {
            s.push((ScopeKind::Device, d));
        }
        s.push((ScopeKind::Team, &self.team_id));
        s.push((ScopeKind::Org, &self.org_id));
        s
    }
}

#[derive(Debug)]
pub(super) struct KeyEntry {
    pub(super) key: VirtualKey,
    pub(super) identity: Arc<Identity>,
}

/// The policy the request path reads: immutable, rebuilt from the store on change.
#[derive(Debug, Default)]
pub struct PolicySnapshot {
    pub(super) keys: HashMap<String, KeyEntry>,
    pub(super) budgets: hashbrown::HashMap<Scoped, Vec<String>>,
    pub(super) limits: hashbrown::HashMap<Scoped, Vec<RateLimit>>,
    pub rows: PolicyRows,
}

impl PolicySnapshot {
    pub fn build(rows: PolicyRows) -> Self {
        let team_org: HashMap<&str, &str> = rows
            .teams
            .iter()
            .map(|t| (t.id.as_str(), t.org_id.as_str()))
            .collect();
        let device_user: HashMap<&str, Option<&str>> = rows
            .devices
            .iter()
            .map(|d| (d.id.as_str(), d.user_id.as_deref()))
            .collect();
        let mut keys = HashMap::new();
        for key in &rows.keys {
            let (user_id, device_id) = match key.owner_kind {
                OwnerKind::User => (Some(key.owner_id.clone()), None),
                OwnerKind::Device => (
                    device_user
                        .get(key.owner_id.as_str())
                        .copied()
                        .flatten()
                        .map(str::to_owned),
                    Some(key.owner_id.clone()),
                ),
                OwnerKind::Team => (None, None),
            };
            let identity = Identity {
                key_id: key.id.clone(),
                key_name: key.name.clone(),
                team_id: key.team_id.clone(),
                org_id: team_org
                    .get(key.team_id.as_str())
                    .map(|s| (*s).to_owned())
                    .unwrap_or_default(),
                user_id,
                device_id,
                policy: key.policy.clone(),
            };
            keys.insert(
                key.id.clone(),
                KeyEntry {
                    key: key.clone(),
                    identity: Arc::new(identity),
                },
            );
        }
        let mut budgets: hashbrown::HashMap<Scoped, Vec<String>> = hashbrown::HashMap::new();
        for b in &rows.budgets {
            budgets
                .entry_ref(&ScopedRef(b.scope_kind, &b.scope_id))
                .or_default()
                .push(b.id.clone());
        }
        let mut limits: hashbrown::HashMap<Scoped, Vec<RateLimit>> = hashbrown::HashMap::new();
        for l in &rows.limits {
            limits
                .entry_ref(&ScopedRef(l.scope_kind, &l.scope_id))
                .or_default()
                .push(l.clone());
        }
        PolicySnapshot {
            keys,
            budgets,
            limits,
            rows,
        }
    }
}
