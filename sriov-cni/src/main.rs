//! `sriov`: the CNI plugin binary. Reads the environment and stdin, runs the library, prints the
//! result or the CNI error JSON on stdout. Logs go to stderr (or `logFile`), never stdout: see
//! [`sriov_cni::log`].

use std::process::ExitCode;

use sriov_cni::env::Env;

fn main() -> ExitCode {
    // Bounded (1 MiB) and refused before any parsing when larger; logging then stays on stderr
    // and the error is shaped for the newest version.
    let read = sriov_cni::read_stdin(std::io::stdin().lock());
    let stdin: &[u8] = read.as_deref().unwrap_or_default();
    sriov_cni::log::init(stdin);
    let out = match &read {
        Err(e) => Err(e.clone()),
        Ok(stdin) => {
            Env::from_lookup(|k| std::env::var(k).ok()).and_then(|env| sriov_cni::run(&env, stdin))
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
            println!("{}", e.to_json(&sriov_cni::error_version(stdin)));
            ExitCode::FAILURE
        }
    }
}
