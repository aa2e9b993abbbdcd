//! `sluice-gateway`: parse the command line, load config, serve.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use sluice_gateway::config::{Config, ProcessEnv, ValidConfig};
use sluice_gateway::engine::record::LogSink;

#[derive(Debug, Parser)]
#[command(name = "sluice-gateway", version, about = "Sluice AI gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
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
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file. Without one, providers come from their usual API-key
    /// environment variables (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, …).
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
        None => serve(cli.serve),
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let metrics = sluice_gateway::metrics::install()?;
        sluice_gateway::server::serve(cfg, Arc::new(LogSink), Some(metrics)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
