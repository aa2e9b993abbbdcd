//! `sluice-guardrails-eval`: detector quality on the labelled corpus, or (`--bench`)
//! scan latency of the built-in detectors.
//!
//! ```text
//! sluice-guardrails-eval [--corpus DIR]     precision/recall per detector; exit 1 below target
//! sluice-guardrails-eval --bench [--iterations N]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use sluice_shared::guardrails::eval::{self, Case};
use sluice_shared::guardrails::sample;
use sluice_shared::guardrails::{CompiledPolicy, Direction, Policy, Scope};

const DEFAULT_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/corpus");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag_value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: sluice-guardrails-eval [--corpus DIR] | --bench [--iterations N]");
        return ExitCode::SUCCESS;
    }
    let policy = match CompiledPolicy::compile(&Policy::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("the default policy does not compile: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.iter().any(|a| a == "--bench") {
        let iterations = flag_value("--iterations")
            .and_then(|n| n.parse().ok())
            .unwrap_or(2000usize);
        bench(&policy, iterations.max(1));
        return ExitCode::SUCCESS;
    }
    let dir = flag_value("--corpus").map_or_else(|| PathBuf::from(DEFAULT_CORPUS), PathBuf::from);
    let cases = match load(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let report = eval::evaluate(&policy, &cases);
    print!("{}", report.render());
    if report.passes() {
        println!(
            "ok: every detector has recall >= {} and a false-positive rate <= {}%",
            eval::MIN_RECALL,
            eval::MAX_FP_RATE * 100.0
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "FAIL: target is recall >= {} and false-positive rate <= {}% per detector",
            eval::MIN_RECALL,
            eval::MAX_FP_RATE * 100.0
        );
        ExitCode::FAILURE
    }
}

fn load(dir: &Path) -> Result<Vec<Case>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read corpus directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        cases.extend(eval::parse_cases(&f.display().to_string(), &text)?);
    }
    Ok(cases)
}

fn bench(policy: &CompiledPolicy, iterations: usize) {
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!(
        "profile: {}",
        if cfg!(debug_assertions) {
            "debug (use --release for real numbers)"
        } else {
            "release"
        }
    );
    println!(
        "{} iterations per row, one thread, all built-in detectors",
        iterations
    );
    println!(
        "{:<10} {:<6} {:<5} {:>9} {:>9} {:>9} {:>10}",
        "size", "hits", "cache", "p50 µs", "p99 µs", "MB/s", "findings"
    );
    // The short rows are the fixed cost every chat message pays (a one-line prompt,
    // a short answer); the KiB rows show the cost is linear in the input. `cold` rows
    // evict the CPU caches before each scan, as a gateway serving other work between
    // requests does: the detectors' tables then come from memory.
    let mut evict = vec![0u8; 32 << 20];
    for (bytes, hits, cold) in [
        (8 << 10, false, false),
        (8 << 10, true, false),
        (32, false, false),
        (256, false, false),
        (1 << 10, false, false),
        (2 << 10, false, false),
        (4 << 10, false, false),
        (16 << 10, false, false),
        (32 << 10, false, false),
        (32, false, true),
        (8 << 10, false, true),
    ] {
        let text = sample::bench_prompt(bytes, hits);
        let found = policy
            .scan(&text, Direction::Input, &Scope::default())
            .findings
            .len();
        let rounds = if cold {
            (iterations / 20).max(1)
        } else {
            iterations
        };
        let mut times = Vec::with_capacity(rounds);
        for round in 0..rounds {
            if cold {
                for line in evict.chunks_mut(64) {
                    line[0] = line[0].wrapping_add(round as u8 | 1);
                }
                std::hint::black_box(&evict);
            }
            let t = Instant::now();
            let outcome = policy.scan(
                std::hint::black_box(&text),
                Direction::Input,
                &Scope::default(),
            );
            std::hint::black_box(&outcome);
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        println!(
            "{:<10} {:<6} {:<5} {:>9.1} {:>9.1} {:>9.0} {:>10}",
            if bytes >= 1024 {
                format!("{} KiB", bytes >> 10)
            } else {
                format!("{bytes} B")
            },
            if hits { "yes" } else { "no" },
            if cold { "cold" } else { "warm" },
            p50,
            p99,
            text.len() as f64 / p50,
            found
        );
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
