//! Realistic prompt text for benchmarks and tests: clean prose and code, with
//! optional hits (a key, an e-mail, a card, a phone number) mixed in.

/// Text that looks like a real coding-assistant prompt — prose, code, a config file,
/// logs with timestamps, versions, UUIDs and commit hashes — and that no built-in
/// detector fires on.
const BENCH_CLEAN: &[&str] = &[
    "You are helping me refactor the billing service. The invoice generator currently loads every line item into memory before rendering, which falls over for enterprise accounts with more than fifty thousand items. I would like to stream the rows instead and keep the totals in a running accumulator. Please keep the public API unchanged.\n\n",
    "```rust\npub fn render_invoice(items: impl Iterator<Item = LineItem>, out: &mut impl Write) -> io::Result<Totals> {\n    let mut totals = Totals::default();\n    for item in items {\n        totals.add(&item);\n        writeln!(out, \"{}\\t{}\\t{:.2}\", item.sku, item.quantity, item.amount)?;\n    }\n    Ok(totals)\n}\n```\n\n",
    "Here is the relevant part of the config:\n\n```toml\n[billing]\ncurrency = \"EUR\"\nrounding = \"half_even\"\nbatch_size = 500\nretry_backoff_ms = [100, 400, 1600]\nfeature_flags = [\"streaming_render\", \"tax_v2\"]\n```\n\n",
    "The logs from the last run show the problem:\n\n2024-11-03T14:22:07.512Z INFO  billing::render started job_id=5f0c6e3e-8d2a-4b7e-9a57-3c1d2e4f6a7b items=51234\n2024-11-03T14:22:09.004Z WARN  billing::render memory above soft limit rss_mb=1824\n2024-11-03T14:22:10.771Z ERROR billing::render aborted after 3.26s (oom-kill)\n\n",
    "We are on version 2.14.3 of the renderer (commit 3f9a1c2e7b4d5a6f8e0c1b2a3d4e5f6a7b8c9d0e) and tokio 1.41. The lockfile pins serde 1.0.215 with integrity sha512-Vd7ZFr0yqpHgiO8TlVVmTvsKYlD0pMZrbQ2NmzhZ2kf3Gk9FMnRklT0AE2Wqz3nqyJQ0Jnd4zOhbZbnqC+AAbg==. Tests run with `cargo test --release -- --test-threads 4`.\n\n",
    "```python\ndef summarize(rows):\n    totals = defaultdict(Decimal)\n    for row in rows:\n        totals[row.currency] += row.amount.quantize(Decimal('0.01'))\n    return dict(sorted(totals.items()))\n```\n\nCould you also explain why the old version was quadratic? I suspect the `sorted()` call inside the loop, but I am not sure.\n\n",
];

/// A few realistic hits to mix in: a key, an e-mail, a card, a phone number.
const BENCH_HITS: &[&str] = &[
    "The staging deploy still uses AKIA4QWERTYUIOPASDFG in the CI variables, please rotate it.\n\n",
    "Send the report to maria.gonzalez@acme-corp.io and call her on +44 20 7946 0321 if it fails.\n\n",
    "The customer paid with 4539 1488 0343 6467 and the charge was refunded twice.\n\n",
];

/// One hit line every this many bytes: three per 8 KiB.
const HIT_SPACING: usize = 2600;

/// A prompt of about `bytes` bytes; with `hits`, a hit line every [`HIT_SPACING`] bytes.
pub fn bench_prompt(bytes: usize, hits: bool) -> String {
    let mut out = String::with_capacity(bytes + 512);
    let mut i = 0;
    let mut next_hit = 0;
    while out.len() < bytes {
        out.push_str(BENCH_CLEAN[i % BENCH_CLEAN.len()]);
        i += 1;
        if hits && out.len() >= (next_hit + 1) * HIT_SPACING {
            out.push_str(BENCH_HITS[next_hit % BENCH_HITS.len()]);
            next_hit += 1;
        }
    }
    let mut cut = bytes.min(out.len());
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out
}
