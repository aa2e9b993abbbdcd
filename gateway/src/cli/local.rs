//! The commands that run in this process: `serve`, `check-config` and `audit verify`
//! (which reads the database directly and needs no running gateway).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, ValidConfig};
use crate::env::ProcessEnv;

fn load(path: Option<&PathBuf>) -> Result<ValidConfig, String> {
    let env = ProcessEnv;
    let (config, name) = match path {
        Some(p) => (
            Config::from_file(p).map_err(|e| e.to_string())?,
            p.display().to_string(),
        ),
        None => (
            Config::from_environment(&env),
            "environment (no --config given)".to_owned(),
        ),
    };
    config.validate(&env, &name).map_err(|e| e.to_string())
}

pub(super) async fn audit_verify(config: Option<PathBuf>) -> ExitCode {
    // Only the database path matters here: provider keys need not be in the environment.
    let parsed = match &config {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string()),
        None => Ok(Config::from_environment(&ProcessEnv)),
    };
    let cfg = match parsed {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(gov) = cfg.governance else {
        eprintln!("this config has no [governance] section, so there is no audit log to verify");
        return ExitCode::FAILURE;
    };
    // Resolved before opening anything: a key that is configured but unreadable must not
    // degrade to an unkeyed check that looks like a pass.
    let key = match gov.audit.chain_key(&ProcessEnv) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let db = gov.database;
    if !std::path::Path::new(&db).exists() {
        eprintln!("audit database {db} does not exist");
        return ExitCode::FAILURE;
    }
    let store = match crate::governance::store::sqlite::SqliteStore::open(&db, false).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot open {db}: {e}");
            return ExitCode::FAILURE;
        }
    };
    use crate::governance::store::Store;
    store.set_audit_key(key.map(std::sync::Arc::new));
    match crate::governance::audit::verify_chain(&store).await {
        Ok(report) => {
            if report.ok {
                println!(
                    "{db}: ok, {} records, head {} (record {})",
                    report.checked,
                    report.head.as_deref().unwrap_or(""),
                    report.head_seq.unwrap_or_default()
                );
            } else {
                println!(
                    "{db}: BROKEN after {} good records: {}",
                    report.checked,
                    report.error.as_deref().unwrap_or("")
                );
            }
            print_verify_details(&report);
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cannot read {db}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The MAC and duplicate parts of an `audit verify` report, one line each.
fn print_verify_details(report: &crate::governance::audit::VerifyReport) {
    use crate::governance::audit::MacReport;
    match &report.mac {
        MacReport::Checked {
            sealed_records,
            sealed_from,
        } => {
            let from = match sealed_from {
                Some(from) if *from > 1 => format!(", sealed from record {from} on"),
                _ => String::new(),
            };
            println!(
                "MAC: checked with governance.audit.hmac_key, {sealed_records} sealed records{from}"
            );
        }
        MacReport::NotChecked { records_with_mac } => println!(
            "MAC: not checked ({records_with_mac} records carry one): set governance.audit.hmac_key in the config to detect a deleted tail with a rewritten head"
        ),
    }
    let dups = &report.duplicates;
    if dups.request_ids > 0 {
        println!(
            "duplicates: {} request ids recorded more than once ({} extra records), e.g. {}; left by spill imports before they became idempotent, they count once toward spend and usage",
            dups.request_ids,
            dups.extra_records,
            dups.examples.join(", ")
        );
    } else {
        println!("duplicates: none");
    }
}

pub(super) fn check_config(path: &PathBuf) -> ExitCode {
    match load(Some(path)) {
        Ok(cfg) => {
            println!("{}: ok", path.display());
            println!("listen: {}", cfg.server.listen);
            for p in &cfg.providers {
                let keys: Vec<&str> = p.keys.iter().map(|k| k.id.as_str()).collect();
                println!(
                    "provider {} (kind {}) at {} keys [{}]",
                    p.name,
                    p.kind.name(),
                    p.base_url,
                    keys.join(", ")
                );
            }
            for (name, alias) in &cfg.aliases {
                let targets: Vec<String> = alias
                    .targets
                    .iter()
                    .map(|t| format!("{}×{}", t.model, t.weight))
                    .collect();
                println!(
                    "alias {name} → {} then {}",
                    targets.join(" | "),
                    alias.fallbacks.join(", ")
                );
            }
            match &cfg.governance {
                Some(g) => println!(
                    "governance: {:?} mode, database {}, admin API {}",
                    g.config.mode,
                    g.config.database,
                    if g.admin_token.is_some() { "on" } else { "off" }
                ),
                None => println!("governance: off (routing only)"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn serve(args: ServeArgs) -> ExitCode {
    let mut cfg = match load(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(listen) = args.listen {
        cfg.server.listen = listen;
    }
    if cfg.providers.is_empty() {
        tracing::warn!(
            "no provider configured: set a provider API key (e.g. OPENAI_API_KEY) or pass --config"
        );
    }
    block_on(async {
        let result = async {
            let metrics = crate::metrics::install()?;
            crate::server::serve(cfg, Some(metrics)).await
        }
        .await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice-gateway: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

#[derive(Debug, clap::Args)]
pub(super) struct ServeArgs {
    /// TOML config file. Without one, providers come from their usual API-key
    /// environment variables (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, …) and
    /// governance runs in open mode.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `server.listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

pub(super) fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
