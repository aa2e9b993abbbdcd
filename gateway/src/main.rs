//! `sluice-gateway`: parse the command line, load config, serve (or run an admin command).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sluice_gateway::cli::{AdminCommand, Remote};
use sluice_gateway::config::{Config, ProcessEnv, ValidConfig};

/// mimalloc instead of glibc malloc: the request path allocates many small short-lived
/// buffers across threads, where glibc's arena locks showed up as ~13 % of CPU in
/// profiles at high request rates (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process before the runtime starts.
///
/// mimalloc asks for huge pages on its arenas; on kernels in `madvise` or `always` THP
/// mode every page it purges and touches again then costs a fresh 2 MiB page, zeroed in
/// the fault (4 % of CPU at 5k rps in profiles, with latency spikes to match), and resident
/// memory counts whole 2 MiB pages: the governed gateway measured 87 MB after its
/// throughput maximum with THP and 61 MB without (docs/benchmarks.md). Failure only
/// means the kernel keeps its default, so it is logged, never fatal.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("note: could not turn off transparent huge pages ({e}); continuing");
    }
}

#[derive(Debug, Parser)]
#[command(name = "sluice-gateway", version, about = "Sluice AI gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve(ServeArgs),
    /// Validate a config file, print what it configures, and exit (1 if invalid).
    CheckConfig {
        #[arg(long, env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
    /// Audit log tools (read the database directly; no running gateway needed).
    #[command(subcommand)]
    Audit(AuditCommand),
    #[command(flatten)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and name the first broken or missing record (exit 1 if any);
    /// with `governance.audit.hmac_key` in the config, check the MACs too. Request ids
    /// recorded more than once are reported (they count once toward spend).
    Verify {
        /// The gateway config whose `governance.database` to check (without it: the
        /// zero-config database, `sluice.db` or SLUICE_DATABASE).
        #[arg(long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Benchmark the audit writer: push synthetic records through the real writer into a
    /// fresh SQLite file as fast as possible and report records per second.
    Bench {
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Concurrent producers (request tasks).
        #[arg(long, default_value_t = 64)]
        producers: u64,
        /// Strict durability: every record acknowledged after fsync (group commit).
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file. Without one, providers come from their usual API-key
    /// environment variables (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, …) and
    /// governance runs in open mode.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `server.listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

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

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("sluice=info,sluice_gateway=info,warn")
            }),
        )
        .init();
    match cli.command {
        Some(Command::CheckConfig { config }) => check_config(&config),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Audit(AuditCommand::Verify { config })) => block_on(audit_verify(config)),
        Some(Command::Audit(AuditCommand::Bench {
            records,
            producers,
            strict,
        })) => block_on(sluice_gateway::governance::audit::bench(
            records, producers, strict,
        )),
        Some(Command::Admin(cmd)) => block_on(admin(cli.remote, cmd)),
        None => serve(cli.serve),
    }
}

fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
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

async fn admin(remote: Remote, cmd: AdminCommand) -> ExitCode {
    match sluice_gateway::cli::run(&remote, cmd).await {
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

async fn audit_verify(config: Option<PathBuf>) -> ExitCode {
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
    let store = match sluice_gateway::governance::store::sqlite::SqliteStore::open(&db, false).await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot open {db}: {e}");
            return ExitCode::FAILURE;
        }
    };
    use sluice_gateway::governance::store::Store;
    store.set_audit_key(key.map(std::sync::Arc::new));
    match sluice_gateway::governance::audit::verify_chain(&store).await {
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
fn print_verify_details(report: &sluice_gateway::governance::audit::VerifyReport) {
    use sluice_gateway::governance::audit::MacReport;
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

fn check_config(path: &PathBuf) -> ExitCode {
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

fn serve(args: ServeArgs) -> ExitCode {
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
            let metrics = sluice_gateway::metrics::install()?;
            sluice_gateway::server::serve(cfg, Some(metrics)).await
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
