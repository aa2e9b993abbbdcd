//! What every admin handler shares: the error shape, JSON extractors whose rejections
//! are admin errors, and small helpers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::api::state::AppState;
use crate::governance::Governance;
use crate::governance::store::StoreError;

/// An admin API error: `{"error": {"message", "type"}}` with a fitting status.
#[derive(Debug)]
pub struct AdminError(pub StatusCode, pub String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let kind = match self.0.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            409 => "conflict_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        };
        (
            self.0,
            Json(json!({"error": {"message": self.1, "type": kind}})),
        )
            .into_response()
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => AdminError(StatusCode::NOT_FOUND, m),
            StoreError::Conflict(m) => AdminError(StatusCode::CONFLICT, m),
            other => {
                tracing::error!(error = %other, "admin API store error");
                AdminError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}

pub(super) fn bad(message: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, message.into())
}

pub(super) type AdminResult<T> = Result<T, AdminError>;

pub(super) fn gov(state: &AppState) -> AdminResult<&Arc<Governance>> {
    state
        .governance
        .as_ref()
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, "governance is not configured".into()))
}

/// An id given by the caller, or a fresh one with `prefix`. Ids are path segments of
/// this API (`/orgs/{id}`) and names in audit records: a small safe alphabet, no dots.
pub(super) fn new_id(given: Option<String>, prefix: &str) -> AdminResult<String> {
    match given {
        Some(id) if crate::config::safe_name(&id) => Ok(id),
        Some(id) => Err(bad(format!(
            "id `{}` may only use letters, digits, `-` and `_` ({} characters at most)",
            id.chars().take(80).collect::<String>(),
            crate::config::MAX_NAME_LEN
        ))),
        None => Ok(format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
    }
}

/// axum's extractors with their rejections answered in this API's JSON error shape
/// (axum's own are plain text).
#[derive(Debug)]
pub(super) struct Body<T>(pub T);
#[derive(Debug)]
pub(super) struct Q<T>(pub T);
#[derive(Debug)]
pub(super) struct P<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = AdminError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(AdminError(
                e.status(),
                format!("bad request body: {}", e.body_text()),
            )),
        }
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = AdminError;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(AdminError(
                e.status(),
                format!("bad query string: {}", e.body_text()),
            )),
        }
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for P<T>
{
    type Rejection = AdminError;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(e) => Err(AdminError(
                e.status(),
                format!("bad path: {}", e.body_text()),
            )),
        }
    }
}

pub(super) async fn reload(gov: &Governance) -> AdminResult<()> {
    gov.reload().await.map_err(AdminError::from)
}
