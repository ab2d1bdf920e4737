//! What the daemon reacts to, from blocking kernel and file sources each on a thread of its own,
//! fed to the async side through one channel:
//!
//! - link state of every netdev (rtnetlink `RTMGRP_LINK`, [`sriov_host::linkmon`]),
//! - PCI devices appearing, disappearing, binding and unbinding (kernel uevents),
//! - the config file changing ([`sriov_host::filewatch`]).

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use sriov_host::linkmon::{LinkMonitor, LinkState};
use sriov_host::uevent::{Uevent, UeventListener};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{read_config, ConfigError};

#[derive(Debug)]
pub enum Event {
    /// Link states; `full` when this is a complete dump (links not in it do not exist).
    Links { states: Vec<LinkState>, full: bool },
    /// PCI devices were added, removed, bound or unbound.
    Devices(Vec<Uevent>),
    /// The config file has new content, or can no longer be read (too large, not a regular
    /// file, unreadable): the error says why.
    Config(Result<Vec<u8>, String>),
}

/// The uevent actions that change pool membership or health.
const PCI_ACTIONS: &[&str] = &["add", "remove", "bind", "unbind"];

/// Follow link state on a thread. The first message is a full dump; after a lost notification
/// (socket overflow) the monitor dumps again, so nothing is missed for long.
pub fn spawn_links(tx: UnboundedSender<Event>) -> std::io::Result<()> {
    let mut mon = LinkMonitor::open()?;
    mon.request_dump()?;
    std::thread::Builder::new()
        .name("linkmon".into())
        .spawn(move || {
            // Collect the dump until its end (a message without links), then stream.
            let mut dump: Option<Vec<LinkState>> = Some(Vec::new());
            loop {
                match mon.recv() {
                    Ok(states) => {
                        if let Some(d) = dump.as_mut() {
                            if states.is_empty() {
                                let states = dump.take().unwrap_or_default();
                                if tx.send(Event::Links { states, full: true }).is_err() {
                                    return;
                                }
                            } else {
                                d.extend(states);
                            }
                        } else if !states.is_empty()
                            && tx
                                .send(Event::Links {
                                    states,
                                    full: false,
                                })
                                .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        if tx.is_closed() {
                            return;
                        }
                        tracing::warn!(error = %e, "link notifications lost; asking for a full dump");
                        std::thread::sleep(Duration::from_millis(100));
                        match mon.request_dump() {
                            Ok(()) => dump = Some(Vec::new()),
                            Err(e) => {
                                tracing::error!(error = %e, "cannot ask for a link dump; retrying in 1 s");
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                    }
                }
            }
        })?;
    Ok(())
}

/// Follow PCI uevents on a thread; only PCI add/remove/bind/unbind are passed on.
pub fn spawn_uevents(tx: UnboundedSender<Event>) -> std::io::Result<()> {
    let listener = UeventListener::open()?;
    std::thread::Builder::new()
        .name("uevents".into())
        .spawn(move || loop {
            match listener.wait(Duration::from_secs(60)) {
                Ok(evs) => {
                    let evs: Vec<Uevent> = evs
                        .into_iter()
                        .filter(|e| {
                            e.subsystem == "pci" && PCI_ACTIONS.contains(&e.action.as_str())
                        })
                        .collect();
                    if !evs.is_empty() && tx.send(Event::Devices(evs)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "uevent socket error");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            if tx.is_closed() {
                return;
            }
        })?;
    Ok(())
}

/// Follow the config file (in-place writes, renames, the ConfigMap `..data` swap). It is read
/// as [`read_config`] reads it at start: a file that vanished is no event, one that cannot be
/// read (too large, a FIFO) is reported as an error.
pub fn spawn_config(path: &Path, tx: UnboundedSender<Event>) -> std::io::Result<()> {
    let read = |p: &Path| match read_config(p) {
        Ok(content) => Some(Ok(content)),
        Err(ConfigError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => None,
        Err(e) => Some(Err(e.to_string())),
    };
    sriov_host::filewatch::watch_file_with(path, read, move |content| {
        tx.send(Event::Config(content)).is_ok()
    })?;
    Ok(())
}
