//! `sriov`: the CNI plugin binary. Reads the environment and stdin, runs the library, prints the
//! result or the CNI error JSON on stdout. Logs go to stderr (or `logFile`), never stdout.

use std::io::Read;
use std::process::ExitCode;

use sriov_cni::env::Env;
use sriov_cni::error::{CniError, IO};

fn init_logging(stdin: &[u8]) {
    let (_, level, file) = sriov_cni::netconf::peek(stdin);
    let level = level
        .or_else(|| std::env::var("SRIOV_CNI_LOG_LEVEL").ok())
        .unwrap_or_else(|| "warn".into());
    // Upstream's level names: "warning" and "panic" are not tracing levels.
    let level = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "panic" | "fatal" => "error".to_string(),
        _ => level,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let opened = file.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    match opened {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    init_logging(&stdin);
    let out = match read {
        Err(e) => Err(CniError::new(IO, format!("reading stdin: {e}"))),
        Ok(_) => {
            Env::from_lookup(|k| std::env::var(k).ok()).and_then(|env| sriov_cni::run(&env, &stdin))
        }
    };
    match out {
        Ok(Some(json)) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(code = e.code, "{}", e.msg);
            println!("{}", e.to_json(&sriov_cni::error_version(&stdin)));
            ExitCode::FAILURE
        }
    }
}
