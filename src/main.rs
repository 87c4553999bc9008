//! The ipvsd binary: parses the command line, sets up logging, runs a subcommand.

#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;
use ipvsd::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the system allocator: a large node's first sync and repairs allocate and
/// free tables of tens of MiB on several threads, which glibc's arenas kept resident (see the
/// README's Performance section for the measurement).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Freed pages go back to the kernel from jemalloc's own threads, soon after they were last
    // used (the delay is built in: `.cargo/config.toml`), not whenever ipvsd next allocates.
    // Without them the pages are returned later, by the allocating threads.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    ipvsd::metrics::set_heap_stats(jemalloc_stats);
    init_logging(cli.log_level.as_deref(), cli.log_format);
    match cli.command {
        Command::Run(args) => ipvsd::app::run(args, shutdown_signal()).await,
        Command::Plan(args) => ipvsd::app::plan(args).await,
        Command::List(args) => ipvsd::app::list(args).await,
        Command::Cleanup(args) => ipvsd::app::cleanup(args).await,
    }
}

fn init_logging(level: Option<&str>, format: LogFormat) {
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// jemalloc's own figures: what live allocations hold and what it keeps resident.
fn jemalloc_stats() -> Option<ipvsd::metrics::HeapStats> {
    // The statistics are a snapshot taken when the epoch advances.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let mib = |bytes: usize| bytes as u64 / (1024 * 1024);
    Some(ipvsd::metrics::HeapStats {
        allocated_mib: mib(tikv_jemalloc_ctl::stats::allocated::read().ok()?),
        resident_mib: mib(tikv_jemalloc_ctl::stats::resident::read().ok()?),
    })
}
