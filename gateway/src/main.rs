//! `sluice-gateway`: the allocator and its kernel setting, then the command line in
//! [`sluice_gateway::cli::main`] (parse it, load config, serve or run an admin command).
//! The end-to-end tests build the same program as `sluice-gateway-under-test`
//! (tests/src/bin/gateway_under_test.rs): keep anything else out of this file.

use std::process::ExitCode;

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

fn main() -> ExitCode {
    no_transparent_huge_pages();
    sluice_gateway::cli::main()
}
