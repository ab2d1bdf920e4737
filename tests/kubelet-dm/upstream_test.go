package kubeletdm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// upstreamScript runs upstream sriovdp in a private mount namespace: the fake tree over /sys,
// tmpfs over /var/lib and /run (so nothing of the machine's is seen or written), the device
// manager's directory at the hard-coded /var/lib/kubelet/device-plugins and the device-info
// directory at /var/run/k8s.cni.cncf.io/devinfo.
const upstreamScript = `set -e
mount --bind "$1" /sys
mount -t tmpfs -o mode=0755 none /var/lib
mkdir -p /var/lib/kubelet/device-plugins
mount --bind "$2" /var/lib/kubelet/device-plugins
mount -t tmpfs -o mode=0755 none /run
mkdir -p /run/k8s.cni.cncf.io/devinfo
mount --bind "$3" /run/k8s.cni.cncf.io/devinfo
exec "$4" -config-file "$5" -logtostderr`

// upstreamBinary is $SRIOV_UPSTREAM_DP_BIN, else the node harness's cache; "" when absent.
func upstreamBinary() string {
	bin := os.Getenv("SRIOV_UPSTREAM_DP_BIN")
	if bin == "" {
		bin = "/var/cache/sriov-node/upstream/bin/sriovdp"
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return ""
	}
	return bin
}

// addModalias writes the modalias file the kernel has for every PCI device: upstream's PCI
// discovery (ghw) reads vendor, device and class from it and drops a device without one.
func addModalias(sys string) error {
	dirs, err := filepath.Glob(filepath.Join(sys, "devices/pci0000:00/*"))
	if err != nil {
		return err
	}
	hex := func(dir, f string) (uint64, error) {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 32)
	}
	for _, d := range dirs {
		v, err1 := hex(d, "vendor")
		dev, err2 := hex(d, "device")
		c, err3 := hex(d, "class")
		if err1 != nil || err2 != nil || err3 != nil {
			return fmt.Errorf("%s: vendor/device/class unreadable", d)
		}
		alias := fmt.Sprintf("pci:v%08Xd%08Xsv%08Xsd00000000bc%02Xsc%02Xi%02X\n", v, dev, v, c>>16, (c>>8)&0xff, c&0xff)
		if err := os.WriteFile(filepath.Join(d, "modalias"), []byte(alias), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// TestUpstreamSideBySide runs upstream sriov-network-device-plugin (sriovdp v3.11.0) and then
// ours under the kubelet's own device manager, on the same PS225 tree and config: both must
// register both pools with every device counted, serve an Allocate through the device manager
// with the PCIDEVICE_* variable, and be counted again by a restarted device manager (ours
// within reRegisterLimit; upstream polls its socket every 5 s). Skipped when the upstream binary is not built (fails
// in CI).
func TestUpstreamSideBySide(t *testing.T) {
	up := upstreamBinary()
	if up == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no upstream sriovdp: run tests/node/build.sh upstream or set SRIOV_UPSTREAM_DP_BIN")
		}
		t.Skip("SKIPPED: no upstream sriovdp (tests/node/build.sh upstream builds it)")
	}
	for _, who := range []string{"upstream", "ours"} {
		t.Run(who, func(t *testing.T) {
			e := newEnv(t)
			k := e.startKubelet()
			if who == "ours" {
				e.startPlugin("kubelet")
			} else {
				if err := addModalias(e.sys); err != nil {
					t.Fatal(err)
				}
				p, err := StartPlugin("unshare", e.netns, "--mount", "--propagation", "private", "--",
					"sh", "-c", upstreamScript, "sh", e.sys, e.dp, e.devinfo, up, e.cfg)
				if err != nil {
					t.Fatal(err)
				}
				e.plugin = p
			}
			took := e.waitRegistered(k, who+": first registration")
			t.Logf("%s: both resources registered and counted %v after the start", who, took.Round(time.Millisecond))

			p := pod("app-"+who, resNet, 2)
			k.AddPod(p)
			if err := allocate(k, p); err != nil {
				t.Fatalf("%s: allocate 2 x %s: %v", who, resNet, err)
			}
			ids := allocated(k, p, resNet)
			o, err := k.M.GetDeviceRunContainerOptions(k.Ctx, p, &p.Spec.Containers[0])
			if err != nil {
				t.Fatalf("%s: GetDeviceRunContainerOptions: %v", who, err)
			}
			got := envMap(o)[envNet]
			for _, id := range ids {
				if !strings.Contains(got, id) {
					t.Errorf("%s: %s=%q does not name allocated device %s", who, envNet, got, id)
				}
			}
			if len(ids) != 2 {
				t.Errorf("%s: allocated %v, want 2 devices", who, ids)
			}
			t.Logf("%s: allocated %v, %s=%s", who, ids, envNet, got)

			// Kubelet restart: a new device manager on the same directory, with the pod.
			if err := k.Stop(); err != nil {
				t.Fatalf("device manager stop: %v", err)
			}
			k2 := e.startKubelet(p)
			took, counts, ok := k2.WaitCapacity(fullCapacity, 20*time.Second)
			if !ok {
				t.Fatalf("%s: never counted again after the kubelet restart: %v", who, counts)
			}
			t.Logf("%s: both resources back %v after the kubelet restart", who, took.Round(time.Millisecond))
			if who == "ours" && took > reRegisterLimit {
				t.Errorf("ours: re-registration took %v, over %v", took, reRegisterLimit)
			}
			if again := allocated(k2, p, resNet); strings.Join(again, ",") != strings.Join(ids, ",") {
				t.Errorf("%s: after the restart the pod has %v, want %v", who, again, ids)
			}
		})
	}
}
