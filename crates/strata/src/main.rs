//! The `strata` binary: parses the command line, loads the configuration and wires the roles
//! together. Everything else lives in the libraries (`strata-gateway`, `strata-api`, …).
//!
//! stdout carries only the human output (addresses, the instance table) or JSON results;
//! logs go to stderr. Exit codes: 0 success, 1 failure at run time (a port in use, a backend
//! down, a role failing), 2 bad usage or configuration.

#![forbid(unsafe_code)]

mod backends;
mod backup;
mod bench;
mod cli;
mod config;
mod events;
mod health;
mod lab;
mod serve;
mod up;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use strata_core::telemetry::init_logging;
use strata_core::{ConfigError, Shutdown, shutdown};

use crate::cli::{Cli, Command};

/// mimalloc rather than the system allocator: after a burst of connections glibc keeps the
/// freed memory in its per-thread arenas, where mimalloc returns it (see README, Chat).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a graceful shutdown may take before the process exits anyway: long enough for
/// in-flight requests to finish, short enough to beat an orchestrator's kill timer (30 s on
/// Kubernetes by default).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Exit code for bad usage or configuration, as clap uses for its own usage errors.
const EXIT_USAGE: u8 = 2;
/// Most threads `strata bench --threads` starts.
const MAX_BENCH_THREADS: usize = 256;

fn main() -> ExitCode {
    // Usage errors exit here with code 2 (clap's own convention).
    let cli = Cli::parse();
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(&config.log);

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Bench(args) = &cli.command
        && let Some(threads) = args.threads
    {
        // The load generator's threads compete with the server for the same cores on one
        // host: `--threads 1` measures as `wrk -t1` does, on one event loop (the calling
        // thread's: no worker thread to hand tasks to and wake).
        if !(1..=MAX_BENCH_THREADS).contains(&threads) {
            eprintln!("strata: bench: threads: expected 1..={MAX_BENCH_THREADS}, got {threads}");
            return ExitCode::from(EXIT_USAGE);
        }
        if threads == 1 {
            builder = tokio::runtime::Builder::new_current_thread();
        } else {
            builder.worker_threads(threads);
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Up(_) => up::run(config).await,
            Command::Serve(args) => serve::run(args, config).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Events(args) => events::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Backup(args) => backup::backup(args, &config).await,
            Command::Restore(args) => backup::restore(args, &config).await,
            Command::Lab(args) => lab::run(args).await,
            Command::Chat(args) => {
                use strata_chat::client::{
                    LastSeen, TerminalOptions, default_room, run_terminal, who_am_i,
                };
                let (room, me) = match &args.room {
                    // With a named room the lookup only names the caller: a chat instance
                    // asked directly cannot answer it, and people are then named from
                    // their messages.
                    Some(room) => (room.clone(), who_am_i(&args.url, &args.token).await.ok()),
                    None => {
                        let me = who_am_i(&args.url, &args.token).await?;
                        (default_room(&me)?, Some(me))
                    }
                };
                let options = TerminalOptions {
                    me,
                    base: args.url.clone(),
                    last_seen: LastSeen::default_path()
                        .map(|path| LastSeen::new(path, &args.url, &room)),
                    room,
                    token: args.token.clone(),
                    after: args.after,
                };
                run_terminal(options).await.map_err(anyhow::Error::from)
            }
        }
    });
    // Tasks still running (after a missed shutdown deadline) are dropped, not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, in plain words: the error is the command's answer, not a log event.
            eprintln!("strata: error: {}", describe(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// An error and its causes on one line, `outer: cause: root`. A cause whose text its outer
/// error already shows (`cannot listen on …: Address already in use` over the `io::Error`
/// itself) is not repeated.
pub fn describe(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A token cancelled on the first Ctrl-C or SIGTERM. Call it first thing: the handlers are
/// installed at once, so a signal during start-up is neither lost nor fatal (the default action
/// would kill the process without stopping anything); the command stops as soon as it is up.
pub fn on_signal() -> Shutdown {
    let token = Shutdown::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        cancel.cancel();
    });
    token
}

/// 2 when the error is the user's configuration or arguments (a PostgreSQL store given to
/// `strata backup`, a backup file that exists without `--force`…), 1 otherwise.
fn exit_code(error: &anyhow::Error) -> u8 {
    let usage = error.chain().any(|cause| {
        cause.is::<ConfigError>()
            || matches!(
                cause.downcast_ref(),
                Some(strata_lab::LabError::Spec { .. })
            )
            || matches!(
                cause.downcast_ref(),
                Some(strata_gateway::GatewayError::Config { .. })
            )
            || cause
                .downcast_ref::<strata_store::BackupError>()
                .is_some_and(strata_store::BackupError::is_usage)
    });
    if usage { EXIT_USAGE } else { 1 }
}
