//! Kernel uevents (NETLINK_KOBJECT_UEVENT): how provisioning waits for VFs to appear and drivers
//! to bind without a polling loop.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// One kernel uevent, reduced to what we use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uevent {
    /// `add`, `remove`, `bind`, `unbind`, `change` ...
    pub action: String,
    /// The device's path under `/sys`, without the `/sys` prefix.
    pub devpath: String,
    /// `SUBSYSTEM`, e.g. `pci` or `net`; empty when the event has none.
    pub subsystem: String,
    /// `DRIVER`, present on `bind` and on events for bound devices.
    pub driver: Option<String>,
}

impl Uevent {
    /// Parse `action@devpath\0KEY=VALUE\0...`; libudev's re-broadcasts (prefix "libudev") are
    /// ignored, we only listen to the kernel.
    pub fn parse(buf: &[u8]) -> Option<Uevent> {
        let mut parts = buf.split(|b| *b == 0).filter(|p| !p.is_empty());
        let head = std::str::from_utf8(parts.next()?).ok()?;
        let (action, devpath) = head.split_once('@')?;
        let mut ev = Uevent {
            action: action.into(),
            devpath: devpath.into(),
            ..Default::default()
        };
        for p in parts {
            let Ok(kv) = std::str::from_utf8(p) else {
                continue;
            };
            match kv.split_once('=') {
                Some(("SUBSYSTEM", v)) => ev.subsystem = v.into(),
                Some(("DRIVER", v)) => ev.driver = Some(v.into()),
                _ => {}
            }
        }
        Some(ev)
    }
}

/// A socket subscribed to the kernel's uevent broadcast.
pub struct UeventListener {
    fd: OwnedFd,
}

impl UeventListener {
    /// Open a non-blocking uevent socket joined to the kernel's broadcast group (receiving
    /// needs no privilege).
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &NetlinkAddr::new(0, 1),
        )?;
        Ok(UeventListener { fd })
    }

    /// Wait up to `timeout` for at least one uevent; return every event queued by then.
    pub fn wait(&self, timeout: Duration) -> io::Result<Vec<Uevent>> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Ok(Vec::new()),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                &mut buf,
                MsgFlags::empty(),
            ) {
                Ok(n) => out.extend(Uevent::parse(&buf[..n])),
                Err(nix::errno::Errno::EAGAIN) => break,
                // The kernel dropped events (socket buffer full): the caller re-reads sysfs anyway.
                Err(nix::errno::Errno::ENOBUFS) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_uevents() {
        let raw = b"bind@/devices/pci0000:00/0000:00:01.0/0000:01:10.0\0ACTION=bind\0DEVPATH=/devices/pci0000:00/0000:00:01.0/0000:01:10.0\0SUBSYSTEM=pci\0DRIVER=igbvf\0SEQNUM=1\0";
        let ev = Uevent::parse(raw).unwrap();
        assert_eq!(ev.action, "bind");
        assert_eq!(ev.subsystem, "pci");
        assert_eq!(ev.driver.as_deref(), Some("igbvf"));
        assert!(ev.devpath.ends_with("0000:01:10.0"));
        assert!(Uevent::parse(b"garbage").is_none());
    }
}
