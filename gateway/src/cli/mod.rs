//! The `sluice-gateway` command line: parse it, load config, serve (or run an admin or
//! audit command). `main.rs` only sets the allocator and calls [`main`], so that the
//! end-to-end tests can build the same program as a binary of their own crate.
//!
//! `admin`: thin wrappers over the admin API so that an admin never hand-writes JSON
//! (`sluice-gateway keys create --team eng --name ci`). `local`: the commands that run in
//! this process: `serve`, `check-config`, and `audit verify`, which reads the database
//! directly and needs no running gateway.

mod admin;
mod local;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use local::{ServeArgs, block_on};

pub use admin::{AdminCommand, KeysCommand, Remote, run};

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

/// The whole `sluice-gateway` program after the allocator is set: parses the process's
/// arguments (exiting with clap's usage error on bad ones), starts logging to stderr and
/// runs the command.
pub fn main() -> ExitCode {
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
        Some(Command::CheckConfig { config }) => local::check_config(&config),
        Some(Command::Serve(args)) => local::serve(args),
        Some(Command::Audit(AuditCommand::Verify { config })) => {
            block_on(local::audit_verify(config))
        }
        Some(Command::Audit(AuditCommand::Bench {
            records,
            producers,
            strict,
        })) => block_on(crate::governance::audit::bench(records, producers, strict)),
        Some(Command::Admin(cmd)) => block_on(admin::print(cli.remote, cmd)),
        None => local::serve(cli.serve),
    }
}
