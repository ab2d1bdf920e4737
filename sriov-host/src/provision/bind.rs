//! Binding one VF to a driver through `driver_override`, verified by reading sysfs back.

use super::{ProvisionError, ProvisionRequest, Provisioner};
use crate::pci::PciAddress;

impl Provisioner<'_> {
    /// Bind one VF to `driver`: `driver_override`, unbind from the current driver,
    /// `drivers_probe`, then verify the `driver` link.
    pub fn bind(
        &self,
        req: &ProvisionRequest,
        index: u32,
        vf: PciAddress,
        driver: &str,
    ) -> Result<(), ProvisionError> {
        let fail = |reason: String| ProvisionError::Bind {
            pf: req.pf.clone(),
            index,
            vf,
            driver: driver.into(),
            reason,
        };
        if driver == "vfio-pci"
            && self
                .sysfs
                .iommu_group(vf)
                .map_err(|e| fail(e.to_string()))?
                .is_none()
        {
            return Err(ProvisionError::NoIommu {
                pf: req.pf.clone(),
                index,
                vf,
            });
        }
        self.sysfs
            .write_attr(vf, "driver_override", driver)
            .map_err(|e| fail(e.to_string()))?;
        if let Some(cur) = self.sysfs.driver(vf).map_err(|e| fail(e.to_string()))? {
            self.sysfs
                .write_rel(&format!("bus/pci/drivers/{cur}/unbind"), &vf.to_string())
                .map_err(|e| fail(format!("unbind from {cur}: {e}")))?;
            self.wait_for(self.timeouts.bind, || {
                self.sysfs.driver(vf).ok().flatten().is_none()
            });
        }
        self.sysfs
            .write_rel("bus/pci/drivers_probe", &vf.to_string())
            .map_err(|e| fail(format!("drivers_probe: {e}")))?;
        let ok = self.wait_for(self.timeouts.bind, || {
            self.sysfs.driver(vf).ok().flatten().as_deref() == Some(driver)
        });
        if !ok {
            let now = self
                .sysfs
                .driver(vf)
                .ok()
                .flatten()
                .unwrap_or_else(|| "no driver".into());
            return Err(fail(format!(
                "the device is bound to {now} after drivers_probe"
            )));
        }
        Ok(())
    }
}
