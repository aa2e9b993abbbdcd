//! `GET /v1/models`: what a caller may use — every alias, and every model a provider
//! lists in its `models`, as `provider/model`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::api::state::AppState;

#[derive(Debug, Serialize)]
pub struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Debug, Serialize)]
pub struct ModelEntry {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: String,
}

pub async fn list_models(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    let engine = state.engine.load();
    let router = &engine.router;
    let mut data: Vec<ModelEntry> = router
        .alias_names()
        .into_iter()
        .map(|alias| ModelEntry {
            id: alias.to_owned(),
            object: "model",
            created: 0,
            owned_by: "sluice-alias".into(),
        })
        .collect();
    for provider in router.providers() {
        for model in &provider.models {
            data.push(ModelEntry {
                id: format!("{}/{model}", provider.name),
                object: "model",
                created: 0,
                owned_by: provider.name.clone(),
            });
        }
    }
    Json(ModelList {
        object: "list",
        data,
    })
}
