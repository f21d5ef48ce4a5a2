//! The `qp2p` binary: parse → tracing → runtime → dispatch → exit code.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use clap::Parser;
use cli::{Cli, Command, Context};
use error::{exit_code, Exit};
use output::{error_text, Output};
use tokio_util::sync::CancellationToken;

mod cli;
mod error;
mod output;

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            };
            let json = std::env::args().any(|a| a == "--json");
            if json && code == Exit::Usage {
                // clap's whole message: what is wrong, the usage line, the hint.
                let whole = e.to_string();
                let message = whole.trim().trim_start_matches("error: ");
                // The stderr line is clap's own, printed whole below.
                Output::new(true, true).event(
                    serde_json::json!({"event": "error", "message": message, "exit_code": code.code()}),
                    String::new,
                );
                let _ = e.print();
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code.code());
        }
    };
    init_tracing(cli.global.verbose, cli.global.quiet);
    let out = Output::new(cli.global.json, cli.global.quiet);
    // One thread runs every connection; file I/O and hashing run on blocking threads.
    // On loopback this halved round-trip latency and raised pooled messages/s by 60 %
    // against the multi-threaded runtime (fewer cross-thread wake-ups); the heavy work
    // (hashing, disk) is on the blocking threads either way.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(
                &format!("cannot start the runtime: {e}"),
                Exit::Other.code(),
            );
            return ExitCode::from(Exit::Other.code());
        }
    };
    let signal = Arc::new(AtomicU8::new(0));
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        watch_signals(shutdown.clone(), signal.clone());
        // Made per command: completions and man need no identity (nor a HOME).
        let ctx = || Context::new(&cli.global, shutdown);
        match cli.command {
            Command::Listen(args) => cli::listen::run(args, ctx()?).await,
            Command::Send(args) => cli::send::run(args, ctx()?).await,
            Command::RaceConnect(args) => cli::race_connect::run(args, ctx()?).await,
            Command::UpnpCheck(args) => cli::upnp_check::run(args, ctx()?).await,
            Command::Bench(args) => cli::bench::run(args, ctx()?).await,
            Command::Id(args) => cli::id::run(args, ctx()?).await,
            Command::Completions(args) => cli::generate::completions(args),
            Command::Man(args) => cli::generate::man(args),
        }
    });
    // Streams still draining must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    let exit = match signal.load(Ordering::SeqCst) {
        2 => {
            out.note("stopped (Ctrl-C)");
            Exit::Interrupted
        }
        15 => {
            out.note("stopped (SIGTERM)");
            Exit::Terminated
        }
        _ => match result {
            Ok(()) => Exit::Success,
            Err(e) => {
                let exit = exit_code(&e);
                if exit != Exit::Success {
                    out.error(&error_text(&e), exit.code());
                }
                exit
            }
        },
    };
    ExitCode::from(exit.code())
}

/// Logs go to stderr; `-v` raises the level, `RUST_LOG` overrides it.
/// glibc's allocator gives the top of a heap back to the kernel whenever more than
/// 128 KiB of it is free, and the next allocation there faults those pages in again,
/// zeroed. A transfer frees and allocates packet and chunk buffers without pause, so at
/// times it did that for every chunk: 20–40 % of the CPU went to page faults and zeroing,
/// and `bench` swung between two speeds (hashed 12 or 6 Gbit/s, run to run). Keeping up
/// to 16 MiB free at a heap's top costs no peak memory (those pages were in use a moment
/// before) and makes every run the fast one (raw 12 → 17 Gbit/s, CPU per GiB 0.72 → 0.51).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// Other allocators (macOS, Windows, musl) have no such trim threshold to set.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("qp2p={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .with_target(false)
        .init();
}

/// Ctrl-C and SIGTERM cancel `shutdown`; the signal number is kept for the exit code.
///
/// The handlers are registered before this returns (not in the spawned task), so a
/// signal that arrives right after start-up is never lost to the default action.
#[cfg(unix)]
fn watch_signals(shutdown: CancellationToken, signal: Arc<AtomicU8>) {
    use tokio::signal::unix::{signal as on, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (on(SignalKind::interrupt()), on(SignalKind::terminate()))
    else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will stop qp2p abruptly");
        return;
    };
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
        };
        signal.store(which, Ordering::SeqCst);
        shutdown.cancel();
    });
}

/// Ctrl-C cancels `shutdown` and exits 130, as SIGINT does on unix (Windows has no
/// SIGTERM). Registered before this returns, as on unix.
#[cfg(windows)]
fn watch_signals(shutdown: CancellationToken, signal: Arc<AtomicU8>) {
    let Ok(mut ctrl_c) = tokio::signal::windows::ctrl_c() else {
        tracing::warn!("cannot install a Ctrl-C handler; Ctrl-C will stop qp2p abruptly");
        return;
    };
    tokio::spawn(async move {
        ctrl_c.recv().await;
        signal.store(2, Ordering::SeqCst);
        shutdown.cancel();
    });
}
