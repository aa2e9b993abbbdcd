//! `sluice-gateway-under-test`: the gateway binary, built from the current source as part
//! of this package so that the end-to-end tests never start a stale
//! `target/debug/sluice-gateway`. Same allocator and same `main` as gateway/src/main.rs;
//! only its transparent-huge-pages opt-out (a performance setting) is left out.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    sluice_gateway::cli::main()
}
