//! Kernel driver names in `provision` requests: which hand a device to userspace, and which
//! names are acceptable at all.

/// Drivers that hand the device to userspace: such a VF never has a netdev.
pub const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Whether `driver` hands its devices to userspace ([`USERSPACE_DRIVERS`]).
pub fn is_userspace_driver(driver: &str) -> bool {
    USERSPACE_DRIVERS.contains(&driver)
}

/// Whether `driver` can name a kernel driver: not empty, only ASCII letters, digits, `_`, `-`
/// and `.`, not starting with `.`. It becomes a path under `/sys/bus/pci/drivers`, so this is
/// the one rule every driver name from a config passes.
pub fn valid_driver_name(driver: &str) -> bool {
    !driver.is_empty()
        && !driver.starts_with('.')
        && driver
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
}
