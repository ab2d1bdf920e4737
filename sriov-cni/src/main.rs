//! `sriov`: the CNI plugin binary. Reads the environment and stdin, runs the library, prints the
//! result or the CNI error JSON on stdout. Logs go to stderr (or `logFile`), never stdout: see
//! [`sriov_cni::log`].

use std::io::Read;
use std::process::ExitCode;

use sriov_cni::env::Env;
use sriov_cni::error::{CniError, IO};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    sriov_cni::log::init(&stdin);
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
