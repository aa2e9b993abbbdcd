//! What a request holds (reservations, meters, slots) and the in-memory counters
//! behind budgets and limits.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::budget::BudgetCounter;
use super::limits::{ConcurrencySlot, MinuteCounter};
use super::scope::{Scoped, ScopedRef};
use super::snapshot::Identity;

/// What a request holds while it runs: reservations to settle and slots to release.
#[derive(Debug, Default)]
pub struct Admission {
    pub identity: Option<Arc<Identity>>,
    pub(super) reservations: Vec<(String, u64)>,
    pub(super) tpm: Vec<Meter>,
    pub(super) _slots: Vec<ConcurrencySlot>,
}

impl Admission {
    /// An admission that holds nothing but names the caller (for refused requests).
    pub fn for_identity(identity: Option<Arc<Identity>>) -> Self {
        Admission {
            identity,
            ..Default::default()
        }
    }
}

/// In-memory counters (Redis in cluster mode, later).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) budgets: Mutex<HashMap<String, BudgetCounter>>,
    pub(super) minutes: Mutex<hashbrown::HashMap<Meter, MinuteCounter>>,
    pub(super) in_flight: Mutex<hashbrown::HashMap<Meter, Arc<AtomicU64>>>,
}

/// What a rate-limit counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Measure {
    Requests,
    Tokens,
    Concurrent,
}

/// One rate-limit counter: a measure of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Meter(pub(super) Measure, pub(super) Scoped);

#[derive(Debug, Clone, Copy, Hash)]
pub(super) struct MeterRef<'a>(pub(super) Measure, pub(super) ScopedRef<'a>);

impl hashbrown::Equivalent<Meter> for MeterRef<'_> {
    fn equivalent(&self, key: &Meter) -> bool {
        self.0 == key.0 && self.1.equivalent(&key.1)
    }
}

impl From<&MeterRef<'_>> for Meter {
    fn from(r: &MeterRef<'_>) -> Self {
        Meter(r.0, Scoped::from(&r.1))
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the maps half-updated
    // in a way that matters more than refusing all traffic would: keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
