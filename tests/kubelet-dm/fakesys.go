// Package kubeletdm drives the sriov-device-plugin binary through the kubelet's own device
// manager (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager), against a kernel-shaped fake sysfs
// tree laid out as docs/CONTRACT.md ("The sysfs tree") describes.
package kubeletdm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// FakeSys is a kernel-shaped fake sysfs tree rooted at Root: real directories, files and
// relative symlinks, so the code under test follows links instead of guessing.
type FakeSys struct {
	Root string
}

// Dev is one PCI device to lay out.
type Dev struct {
	Addr       string
	Vendor     uint16
	Device     uint16
	Class      uint32
	Driver     string // "" = unbound
	Netdev     string // "" = none in this namespace
	NUMA       int
	IOMMUGroup int // < 0 = none
}

// NewFakeSys creates the skeleton of a tree under root.
func NewFakeSys(root string) (*FakeSys, error) {
	f := &FakeSys{Root: root}
	for _, d := range []string{"bus/pci/devices", "bus/pci/drivers", "devices/pci0000:00", "class/net", "kernel/iommu_groups"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bus/pci/drivers_probe"), nil, 0o644); err != nil {
		return nil, err
	}
	return f, nil
}

// DevDir is the real directory of a device: devices/pci0000:00/<addr>.
func (f *FakeSys) DevDir(addr string) string {
	return filepath.Join(f.Root, "devices/pci0000:00", addr)
}

func write(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}

func link(target, at string) error {
	_ = os.Remove(at)
	return os.Symlink(target, at)
}

// Add lays out one device (no SR-IOV role).
func (f *FakeSys) Add(d Dev) error {
	dir := f.DevDir(d.Addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	class := d.Class
	if class == 0 {
		class = 0x020000
	}
	files := map[string]string{
		"vendor":          fmt.Sprintf("0x%04x\n", d.Vendor),
		"device":          fmt.Sprintf("0x%04x\n", d.Device),
		"class":           fmt.Sprintf("0x%06x\n", class),
		"numa_node":       fmt.Sprintf("%d\n", d.NUMA),
		"driver_override": "(null)\n",
	}
	for name, c := range files {
		if err := write(filepath.Join(dir, name), c); err != nil {
			return err
		}
	}
	if err := link("../../../devices/pci0000:00/"+d.Addr, filepath.Join(f.Root, "bus/pci/devices", d.Addr)); err != nil {
		return err
	}
	if d.IOMMUGroup >= 0 {
		gdir := filepath.Join(f.Root, fmt.Sprintf("kernel/iommu_groups/%d/devices", d.IOMMUGroup))
		if err := os.MkdirAll(gdir, 0o755); err != nil {
			return err
		}
		if err := link("../../../../devices/pci0000:00/"+d.Addr, filepath.Join(gdir, d.Addr)); err != nil {
			return err
		}
		if err := link(fmt.Sprintf("../../../kernel/iommu_groups/%d", d.IOMMUGroup), filepath.Join(dir, "iommu_group")); err != nil {
			return err
		}
	}
	if err := f.Bind(d.Addr, d.Driver); err != nil {
		return err
	}
	return f.SetNetdev(d.Addr, d.Netdev)
}

// AddPF lays out a PF with total possible VFs and none created.
func (f *FakeSys) AddPF(d Dev, total int) error {
	if err := f.Add(d); err != nil {
		return err
	}
	dir := f.DevDir(d.Addr)
	if err := write(filepath.Join(dir, "sriov_totalvfs"), fmt.Sprintf("%d\n", total)); err != nil {
		return err
	}
	return write(filepath.Join(dir, "sriov_numvfs"), "0\n")
}

// AddVF lays out VF number index of pf (which must exist) and updates sriov_numvfs.
func (f *FakeSys) AddVF(pf string, index int, d Dev) error {
	if err := f.Add(d); err != nil {
		return err
	}
	pdir := f.DevDir(pf)
	if err := link("../"+d.Addr, filepath.Join(pdir, fmt.Sprintf("virtfn%d", index))); err != nil {
		return err
	}
	if err := link("../"+pf, filepath.Join(f.DevDir(d.Addr), "physfn")); err != nil {
		return err
	}
	ents, err := os.ReadDir(pdir)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "virtfn") {
			n++
		}
	}
	return write(filepath.Join(pdir, "sriov_numvfs"), fmt.Sprintf("%d\n", n))
}

// Bind binds addr to driver (or unbinds it with ""): the driver link and the driver's directory
// with its bind/unbind files.
func (f *FakeSys) Bind(addr, driver string) error {
	l := filepath.Join(f.DevDir(addr), "driver")
	_ = os.Remove(l)
	if driver == "" {
		return nil
	}
	ddir := filepath.Join(f.Root, "bus/pci/drivers", driver)
	if err := os.MkdirAll(ddir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"bind", "unbind", "new_id"} {
		p := filepath.Join(ddir, name)
		if _, err := os.Stat(p); os.IsNotExist(err) {
			if err := write(p, ""); err != nil {
				return err
			}
		}
	}
	return link("../../../bus/pci/drivers/"+driver, l)
}

// SetNetdev gives addr the netdev name in this namespace (or none): its net/<name> directory and
// the class/net/<name> link.
func (f *FakeSys) SetNetdev(addr, name string) error {
	net := filepath.Join(f.DevDir(addr), "net")
	if ents, err := os.ReadDir(net); err == nil {
		for _, e := range ents {
			_ = os.Remove(filepath.Join(f.Root, "class/net", e.Name()))
		}
	}
	_ = os.RemoveAll(net)
	if name == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(net, name), 0o755); err != nil {
		return err
	}
	if err := write(filepath.Join(net, name, "type"), "1\n"); err != nil {
		return err
	}
	return link(fmt.Sprintf("../../devices/pci0000:00/%s/net/%s", addr, name), filepath.Join(f.Root, "class/net", name))
}

// Broadcom Stingray PS225 IDs.
const (
	Brcm    = 0x14e4
	PS225PF = 0xd802
	PS225VF = 0xd800
)

// VF describes one VF of the PS225 layout.
type VF struct {
	Addr   string
	PF     string
	Index  int
	Driver string
	Netdev string
	NUMA   int
	Group  int
}

// PF describes one PF of the PS225 layout.
type PF struct {
	Addr   string
	Netdev string
	NUMA   int
	VFs    []VF
}

// PS225Layout is the layout of tests/src/fakesys.rs ps225_two_pfs(): two PS225 PFs
// (0000:03:00.0 enp3s0f0np0 on NUMA 0, 0000:04:00.0 enp4s0f0np0 on NUMA 1, bnxt_en), 8 VFs each at
// 0000:0{3,4}:10.{0-7}: VFs 0-5 bound to bnxt_en with netdevs enp{3,4}s0f0v{i}, VFs 6-7 bound to
// vfio-pci; VF i of PF p in IOMMU group 100 + 8p + i.
func PS225Layout() []PF {
	var pfs []PF
	for p := 0; p < 2; p++ {
		bus := 3 + p
		pf := PF{
			Addr:   fmt.Sprintf("0000:%02x:00.0", bus),
			Netdev: fmt.Sprintf("enp%ds0f0np0", bus),
			NUMA:   p,
		}
		for i := 0; i < 8; i++ {
			vf := VF{
				Addr:  fmt.Sprintf("0000:%02x:10.%d", bus, i),
				PF:    pf.Addr,
				Index: i,
				NUMA:  p,
				Group: 100 + p*8 + i,
			}
			if i < 6 {
				vf.Driver = "bnxt_en"
				vf.Netdev = fmt.Sprintf("enp%ds0f0v%d", bus, i)
			} else {
				vf.Driver = "vfio-pci"
			}
			pf.VFs = append(pf.VFs, vf)
		}
		pfs = append(pfs, pf)
	}
	return pfs
}

// BuildPS225 lays out PS225Layout() under sysRoot and the matching vfio device nodes
// (vfio/vfio and vfio/<group> for every vfio-pci VF) under devRoot.
func BuildPS225(sysRoot, devRoot string) ([]PF, error) {
	f, err := NewFakeSys(sysRoot)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(devRoot, "vfio"), 0o755); err != nil {
		return nil, err
	}
	if err := write(filepath.Join(devRoot, "vfio/vfio"), ""); err != nil {
		return nil, err
	}
	pfs := PS225Layout()
	for _, pf := range pfs {
		err := f.AddPF(Dev{Addr: pf.Addr, Vendor: Brcm, Device: PS225PF, Driver: "bnxt_en", Netdev: pf.Netdev, NUMA: pf.NUMA, IOMMUGroup: -1}, 16)
		if err != nil {
			return nil, err
		}
		for _, vf := range pf.VFs {
			d := Dev{Addr: vf.Addr, Vendor: Brcm, Device: PS225VF, Driver: vf.Driver, Netdev: vf.Netdev, NUMA: vf.NUMA, IOMMUGroup: vf.Group}
			if err := f.AddVF(pf.Addr, vf.Index, d); err != nil {
				return nil, err
			}
			if vf.Driver == "vfio-pci" {
				if err := write(filepath.Join(devRoot, fmt.Sprintf("vfio/%d", vf.Group)), ""); err != nil {
					return nil, err
				}
			}
		}
	}
	return pfs, nil
}

// PS225Config is the pool config: ps225_sriov_netdevice (drivers bnxt_en, devices d800) and
// ps225_dpdk (drivers vfio-pci), both with resourcePrefix arm.com.
const PS225Config = `{
  "resourceList": [
    {
      "resourceName": "ps225_sriov_netdevice",
      "resourcePrefix": "arm.com",
      "selectors": {"devices": ["d800"], "drivers": ["bnxt_en"]}
    },
    {
      "resourceName": "ps225_dpdk",
      "resourcePrefix": "arm.com",
      "selectors": {"drivers": ["vfio-pci"]}
    }
  ]
}
`
