//! What the store keeps for the policy snapshot.

use crate::governance::model::{Budget, Device, Org, RateLimit, Team, User, VirtualKey};

/// Everything the policy snapshot is built from.
#[derive(Debug, Clone, Default)]
pub struct PolicyRows {
    pub orgs: Vec<Org>,
    pub teams: Vec<Team>,
    pub users: Vec<User>,
    pub devices: Vec<Device>,
    pub keys: Vec<VirtualKey>,
    pub budgets: Vec<Budget>,
    pub limits: Vec<RateLimit>,
}

/// Deletable entity kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Org,
    Team,
    User,
    Device,
    Key,
    Budget,
    Limit,
}

impl Entity {
    pub fn table(self) -> &'static str {
        match self {
            Entity::Org => "orgs",
            Entity::Team => "teams",
            Entity::User => "users",
            Entity::Device => "devices",
            Entity::Key => "keys",
            Entity::Budget => "budgets",
            Entity::Limit => "rate_limits",
        }
    }
}
