//! Orgs, teams, users and devices, and deleting any entity.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AdminError, AdminResult, Body, P, bad, gov, new_id, reload};
use crate::api::state::AppState;
use crate::governance::model::{Device, Org, Team, User};
use crate::governance::now_ms;
use crate::governance::store::Entity;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewOrg {
    name: String,
    #[serde(default)]
    id: Option<String>,
}

pub(super) async fn list_orgs(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.orgs})))
}

pub(super) async fn create_org(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewOrg>,
) -> AdminResult<(StatusCode, Json<Org>)> {
    let g = gov(&s)?;
    if b.name.trim().is_empty() {
        return Err(bad("`name` must not be empty"));
    }
    let org = Org {
        id: new_id(b.id, "org")?,
        name: b.name,
        created_ms: now_ms(),
    };
    g.store.insert_org(org.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(org)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTeam {
    org_id: String,
    name: String,
    #[serde(default)]
    id: Option<String>,
}

pub(super) async fn list_teams(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.teams})))
}

pub(super) async fn create_team(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewTeam>,
) -> AdminResult<(StatusCode, Json<Team>)> {
    let g = gov(&s)?;
    if !g.snapshot().rows.orgs.iter().any(|o| o.id == b.org_id) {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("org `{}` does not exist", b.org_id),
        ));
    }
    let team = Team {
        id: new_id(b.id, "team")?,
        org_id: b.org_id,
        name: b.name,
        created_ms: now_ms(),
    };
    g.store.insert_team(team.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(team)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    team_id: String,
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

pub(super) async fn list_users(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.users})))
}

pub(super) async fn create_user(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewUser>,
) -> AdminResult<(StatusCode, Json<User>)> {
    let g = gov(&s)?;
    if !b.email.contains('@') {
        return Err(bad(format!("`{}` is not an e-mail address", b.email)));
    }
    if !g.snapshot().rows.teams.iter().any(|t| t.id == b.team_id) {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("team `{}` does not exist", b.team_id),
        ));
    }
    let user = User {
        id: new_id(b.id, "user")?,
        team_id: b.team_id,
        email: b.email,
        name: b.name,
        created_ms: now_ms(),
    };
    g.store.insert_user(user.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewDevice {
    team_id: String,
    hostname: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

pub(super) async fn list_devices(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.devices})))
}

pub(super) async fn create_device(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewDevice>,
) -> AdminResult<(StatusCode, Json<Device>)> {
    let g = gov(&s)?;
    if !g.snapshot().rows.teams.iter().any(|t| t.id == b.team_id) {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("team `{}` does not exist", b.team_id),
        ));
    }
    let device = Device {
        id: new_id(b.id, "dev")?,
        team_id: b.team_id,
        user_id: b.user_id,
        hostname: b.hostname,
        created_ms: now_ms(),
    };
    g.store.insert_device(device.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

pub(super) async fn delete_entity(
    s: &AppState,
    entity: Entity,
    id: String,
) -> AdminResult<StatusCode> {
    let g = gov(s)?;
    g.store.delete(entity, id).await?;
    reload(g).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_org(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Org, id).await
}
pub(super) async fn delete_team(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Team, id).await
}
pub(super) async fn delete_user(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::User, id).await
}
pub(super) async fn delete_device(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Device, id).await
}
pub(super) async fn delete_key(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Key, id).await
}
pub(super) async fn delete_budget(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Budget, id).await
}
pub(super) async fn delete_limit(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Limit, id).await
}
