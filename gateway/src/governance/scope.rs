//! A scope a budget or limit attaches to, as a map key.

use super::model::ScopeKind;

/// A scope a budget or limit attaches to: (level, id). Looked up without allocating
/// through [`ScopedRef`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Scoped(pub(super) ScopeKind, pub(super) Box<str>);

#[derive(Debug, Clone, Copy, Hash)]
pub(super) struct ScopedRef<'a>(pub(super) ScopeKind, pub(super) &'a str);

impl hashbrown::Equivalent<Scoped> for ScopedRef<'_> {
    fn equivalent(&self, key: &Scoped) -> bool {
        self.0 == key.0 && self.1 == &*key.1
    }
}

impl From<&ScopedRef<'_>> for Scoped {
    fn from(r: &ScopedRef<'_>) -> Self {
        Scoped(r.0, r.1.into())
    }
}
