//! Admin commands for the command line: thin wrappers over the admin API so that an
//! admin never hand-writes JSON (`sluice-gateway keys create --team eng --name ci`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args)]
pub struct Remote {
    /// Gateway base URL.
    #[arg(
        long,
        env = "SLUICE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Admin token (`governance.admin_token`).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a virtual key; prints its secret once.
    Create {
        #[arg(long)]
        name: String,
        /// A team key (CI, shared bots), or the team the owner must belong to.
        #[arg(long)]
        team: Option<String>,
        #[arg(long, conflicts_with = "device")]
        user: Option<String>,
        #[arg(long)]
        device: Option<String>,
        /// Allowed models (patterns, `*` wildcard), comma-separated.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        deny_models: Vec<String>,
        /// Expiry, in days from now.
        #[arg(long)]
        expires_days: Option<u64>,
        /// off, metadata (default) or full.
        #[arg(long)]
        content: Option<String>,
    },
    List,
    /// Refuse the key from now on.
    Block {
        id: String,
    },
    Unblock {
        id: String,
    },
    /// New secret; the old one keeps working for `--grace-secs` (default 86400).
    Rotate {
        id: String,
        #[arg(long)]
        grace_secs: Option<u64>,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Virtual keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create an org.
    OrgCreate {
        name: String,
        #[arg(long)]
        id: Option<String>,
    },
    /// Create a team in an org.
    TeamCreate {
        #[arg(long)]
        org: String,
        name: String,
        #[arg(long)]
        id: Option<String>,
    },
    /// Create a user in a team.
    UserCreate {
        #[arg(long)]
        team: String,
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    /// Set a budget: `--scope team:eng --window month --limit 50`.
    BudgetSet {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        window: String,
        #[arg(long)]
        limit: f64,
        #[arg(long)]
        rolling: bool,
    },
    /// Set a rate limit: `--scope key:abc --rpm 60 --concurrency 4`.
    LimitSet {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        rpm: Option<u64>,
        #[arg(long)]
        tpm: Option<u64>,
        #[arg(long)]
        concurrency: Option<u64>,
    },
    /// Create or replace a provider through the admin API (keys as `env:VAR` references).
    ProviderSet {
        name: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        base_url: Option<String>,
        /// Key references, comma-separated: `env:OPENAI_API_KEY,env:OPENAI_API_KEY_2`.
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
    },
    /// Create or replace an alias: `--target openai/gpt-4o-mini:3 --target anthropic/claude-haiku-4-5:1`.
    AliasSet {
        name: String,
        /// `provider/model` or `provider/model:weight`.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        #[arg(long = "fallback")]
        fallbacks: Vec<String>,
    },
    /// List the providers and aliases in force.
    Routing,
    /// Spend and tokens grouped by key, user, device, team, org, model, provider or app.
    Usage {
        #[arg(long)]
        group_by: String,
        #[arg(long)]
        by_day: bool,
    },
}

fn scope(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` must be KIND:ID, e.g. team:eng or key:abcd"))
}

/// Runs an admin command against the API and returns the JSON it answered.
pub async fn run(remote: &Remote, cmd: AdminCommand) -> Result<Value, String> {
    let token = remote
        .admin_token
        .clone()
        .ok_or("set the admin token with --admin-token or SLUICE_ADMIN_TOKEN")?;
    let client = reqwest::Client::new();
    let base = format!("{}/api/v1", remote.url.trim_end_matches('/'));
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req
                .send()
                .await
                .map_err(|e| format!("cannot reach the gateway: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            let value: Value = if text.is_empty() {
                json!({"status": status.as_u16()})
            } else {
                serde_json::from_str(&text).unwrap_or(json!({"raw": text}))
            };
            if status.is_success() {
                Ok(value)
            } else {
                Err(format!(
                    "{}: {}",
                    status.as_u16(),
                    value
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or(&text)
                ))
            }
        }
    };
    use reqwest::Method as M;
    match cmd {
        AdminCommand::Keys(k) => match k {
            KeysCommand::Create {
                name,
                team,
                user,
                device,
                models,
                deny_models,
                expires_days,
                content,
            } => {
                let expires_ms =
                    expires_days.map(|d| crate::governance::now_ms() + d as i64 * 86_400_000);
                let mut policy = json!({"allow_models": models, "deny_models": deny_models});
                if let Some(c) = content {
                    policy["content_logging"] = json!(c);
                }
                call(
                    M::POST,
                    "/keys".into(),
                    Some(json!({
                        "name": name, "team_id": team, "user_id": user, "device_id": device,
                        "expires_ms": expires_ms, "policy": policy,
                    })),
                )
                .await
            }
            KeysCommand::List => call(M::GET, "/keys".into(), None).await,
            KeysCommand::Block { id } => {
                call(
                    M::PATCH,
                    format!("/keys/{id}"),
                    Some(json!({"status": "blocked"})),
                )
                .await
            }
            KeysCommand::Unblock { id } => {
                call(
                    M::PATCH,
                    format!("/keys/{id}"),
                    Some(json!({"status": "active"})),
                )
                .await
            }
            KeysCommand::Rotate { id, grace_secs } => {
                call(
                    M::POST,
                    format!("/keys/{id}/rotate"),
                    Some(json!({"grace_secs": grace_secs})),
                )
                .await
            }
            KeysCommand::Delete { id } => call(M::DELETE, format!("/keys/{id}"), None).await,
        },
        AdminCommand::OrgCreate { name, id } => {
            call(
                M::POST,
                "/orgs".into(),
                Some(json!({"name": name, "id": id})),
            )
            .await
        }
        AdminCommand::TeamCreate { org, name, id } => {
            call(
                M::POST,
                "/teams".into(),
                Some(json!({"org_id": org, "name": name, "id": id})),
            )
            .await
        }
        AdminCommand::UserCreate {
            team,
            email,
            name,
            id,
        } => {
            call(
                M::POST,
                "/users".into(),
                Some(json!({"team_id": team, "email": email, "name": name, "id": id})),
            )
            .await
        }
        AdminCommand::BudgetSet {
            scope: s,
            window,
            limit,
            rolling,
        } => {
            let (kind, id) = scope(&s)?;
            call(M::POST, "/budgets".into(), Some(json!({"scope_kind": kind, "scope_id": id, "window": window, "limit_usd": limit, "rolling": rolling}))).await
        }
        AdminCommand::LimitSet {
            scope: s,
            rpm,
            tpm,
            concurrency,
        } => {
            let (kind, id) = scope(&s)?;
            call(M::POST, "/limits".into(), Some(json!({"scope_kind": kind, "scope_id": id, "rpm": rpm, "tpm": tpm, "concurrency": concurrency}))).await
        }
        AdminCommand::ProviderSet {
            name,
            kind,
            base_url,
            keys: key_refs,
            models,
        } => {
            let keys: Vec<Value> = key_refs.iter().map(|k| json!({"value": k})).collect();
            let mut body = json!({"kind": kind, "keys": keys, "models": models});
            if let Some(url) = base_url {
                body["base_url"] = json!(url);
            }
            call(M::PUT, format!("/providers/{name}"), Some(body)).await
        }
        AdminCommand::AliasSet {
            name,
            targets,
            fallbacks,
        } => {
            let targets: Vec<Value> = targets
                .iter()
                .map(|t| {
                    match t
                        .rsplit_once(':')
                        .and_then(|(m, w)| w.parse::<f64>().ok().map(|w| (m, w)))
                    {
                        Some((model, weight)) => json!({"model": model, "weight": weight}),
                        None => json!({"model": t}),
                    }
                })
                .collect();
            call(
                M::PUT,
                format!("/aliases/{name}"),
                Some(json!({"targets": targets, "fallbacks": fallbacks})),
            )
            .await
        }
        AdminCommand::Routing => {
            let providers = call(M::GET, "/providers".into(), None).await?;
            let aliases = call(M::GET, "/aliases".into(), None).await?;
            Ok(json!({"providers": providers["data"], "aliases": aliases["data"]}))
        }
        AdminCommand::Usage { group_by, by_day } => {
            call(
                M::GET,
                format!("/usage?group_by={group_by}&by_day={by_day}"),
                None,
            )
            .await
        }
    }
}

/// Runs an admin command and prints its answer as pretty JSON on stdout (a new secret
/// also on stderr, with a warning that it is shown once), or the error on stderr.
pub(super) async fn print(remote: Remote, cmd: AdminCommand) -> ExitCode {
    match run(&remote, cmd).await {
        Ok(value) => {
            if let Some(secret) = value.get("secret").and_then(|s| s.as_str()) {
                eprintln!("secret (shown once, store it now): {secret}");
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
