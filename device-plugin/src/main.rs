use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sriov_device_plugin::cli::{Cli, Command};
use sriov_device_plugin::config::Config;
use sriov_device_plugin::context::HostPaths;
use sriov_device_plugin::daemon::{self, DaemonError};
use sriov_device_plugin::{inventory, provision_apply};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Some(Command::Inventory { opts, json }) => run_inventory(&opts, json),
        None => run_daemon(cli.opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sriov-device-plugin: {e:#}");
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<DaemonError>())
                .map_or(1, DaemonError::exit_code);
            ExitCode::from(code)
        }
    }
}

fn run_daemon(opts: sriov_device_plugin::cli::Opts) -> anyhow::Result<()> {
    daemon::raise_fd_limit();
    // Two workers: a pool's Allocate, a config apply or a sysfs re-scan on one never holds up
    // the kubelet's calls on the others (blocking file I/O goes to the blocking pool anyway).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(daemon::WORKER_THREADS)
        .max_blocking_threads(daemon::BLOCKING_THREADS)
        .thread_name("sriov-dp")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(daemon::run(opts))?;
    Ok(())
}

fn run_inventory(opts: &sriov_device_plugin::cli::Opts, json: bool) -> anyhow::Result<()> {
    let config = Config::load(&opts.config, &opts.resource_prefix).map_err(DaemonError::from)?;
    let paths = HostPaths::from_opts(opts);
    let found =
        inventory::discover_pools(config, &paths).map_err(|source| DaemonError::Discovery {
            root: opts.sysfs_root.clone(),
            source,
        })?;
    let plan = provision_apply::plan(&paths.sysfs, &paths.devinfo_dir, &found.config.provision);
    if json {
        let (out, unplaced) =
            inventory::to_json(&found, plan).context("cannot encode the inventory")?;
        println!("{out}");
        for row in unplaced {
            eprintln!("provision: {row}");
        }
    } else {
        print!("{}", inventory::to_table(&found));
        if !plan.is_empty() {
            println!("\nPROVISION");
            for row in plan {
                println!("{row}");
            }
        }
    }
    Ok(())
}
