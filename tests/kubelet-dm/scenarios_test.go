package kubeletdm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
)

// healthLimit is how long a health change may take to reach the device manager: the spec says
// ListAndWatch is re-sent within a second of a change; one more second of slack for a loaded
// machine.
const healthLimit = 2 * time.Second

// TestPluginBeforeKubelet starts the plugin first (node boot order is not guaranteed), then the
// kubelet; then restarts the plugin under a running kubelet.
func TestPluginBeforeKubelet(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(e.dp, 0o750); err != nil {
		t.Fatal(err)
	}
	e.startPlugin("kubelet")
	time.Sleep(time.Second)
	if exited, err := e.plugin.Exited(); exited {
		t.Fatalf("plugin exited without a kubelet: %v", err)
	}
	k := e.startKubelet()
	took := e.waitRegistered(k, "registration after a late kubelet")
	t.Logf("registered %v after the kubelet started", took.Round(time.Millisecond))
	if took > reRegisterLimit {
		t.Errorf("registration took %v after the kubelet appeared, more than %v", took.Round(time.Millisecond), reRegisterLimit)
	}

	ents, _ := os.ReadDir(e.dp)
	for _, de := range ents {
		st, err := os.Stat(filepath.Join(e.dp, de.Name()))
		if err != nil || st.Mode()&os.ModeSocket == 0 || de.Name() == "kubelet.sock" {
			continue
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("plugin socket %s has mode %o, contract: 0600", de.Name(), perm)
		}
	}

	p := pod("dpdk-app", resDPDK, 1)
	k.AddPod(p)
	if err := allocate(k, p); err != nil {
		t.Fatalf("Allocate: %v", err)
	}

	// Plugin restart under a running kubelet: devices go unhealthy while it is away, come back
	// when it registers again; the allocation stays counted.
	if code, err := e.plugin.Stop(10 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: exit code %d, %v", code, err)
	}
	e.startPlugin("kubelet")
	took, got, ok := k.WaitCapacity(fullCapacity, 20*time.Second)
	if !ok {
		t.Fatalf("restarted plugin not counted again: GetCapacity %v after %v", got, took)
	}
	t.Logf("restarted plugin registered and counted %v after its start", took.Round(time.Millisecond))
	more := pod("dpdk-more", resDPDK, 4)
	k.AddPod(more)
	if err := allocate(k, more); err == nil {
		t.Errorf("4 dpdk VFs allocated while one is held by a running pod")
	}
}

// TestHealthThroughDeviceManager changes the node under the running plugin and checks what the
// device manager then counts as allocatable (contract, "Health").
func TestHealthThroughDeviceManager(t *testing.T) {
	e := newEnv(t)
	k := e.startKubelet()
	e.startPlugin("kubelet")
	e.waitRegistered(k, "registration")
	fs := &FakeSys{Root: e.sys}

	t.Run("VF unbound from its pool's driver", func(t *testing.T) {
		vf := "0000:03:10.0"
		if err := fs.Bind(vf, ""); err != nil {
			t.Fatal(err)
		}
		if err := e.ns.Uevent("unbind", vf, ""); err != nil {
			t.Fatal(err)
		}
		want := map[string]Counts{resNet: {Capacity: 12, Allocatable: 11}, resDPDK: {Capacity: 4, Allocatable: 4}}
		took, got, ok := k.WaitCapacity(want, 10*time.Second)
		if !ok {
			t.Errorf("after unbinding %s: GetCapacity %v after %v, want %v", vf, got, took.Round(time.Millisecond), want)
		} else {
			t.Logf("unbind seen by the device manager after %v", took.Round(time.Millisecond))
			if took > healthLimit {
				t.Errorf("unbind took %v to reach the device manager, more than %v", took.Round(time.Millisecond), healthLimit)
			}
			if d := k.M.GetAllocatableDevices(k.Log.Logger())[resNet][vf]; d != nil && d.Health != "Unhealthy" {
				t.Errorf("%s health %q, want Unhealthy", vf, d.Health)
			}
		}
		if err := fs.Bind(vf, "bnxt_en"); err != nil {
			t.Fatal(err)
		}
		if err := e.ns.Uevent("bind", vf, "bnxt_en"); err != nil {
			t.Fatal(err)
		}
		if took, got, ok := k.WaitCapacity(fullCapacity, 10*time.Second); !ok {
			t.Errorf("after rebinding %s: GetCapacity %v after %v, want %v", vf, got, took.Round(time.Millisecond), fullCapacity)
		}
	})

	t.Run("PF loses carrier", func(t *testing.T) {
		pf := e.pfs[0]
		if err := e.ns.SetPeer(pf.Netdev, false); err != nil {
			t.Fatal(err)
		}
		want := map[string]Counts{resNet: {Capacity: 12, Allocatable: 6}, resDPDK: {Capacity: 4, Allocatable: 2}}
		took, got, ok := k.WaitCapacity(want, 10*time.Second)
		if !ok {
			t.Errorf("after %s lost carrier: GetCapacity %v after %v, want %v (every VF of %s unhealthy, whatever its pool)",
				pf.Netdev, got, took.Round(time.Millisecond), want, pf.Addr)
		} else {
			t.Logf("carrier loss seen by the device manager after %v", took.Round(time.Millisecond))
			if took > healthLimit {
				t.Errorf("carrier loss took %v to reach the device manager, more than %v", took.Round(time.Millisecond), healthLimit)
			}
		}
		if err := e.ns.SetPeer(pf.Netdev, true); err != nil {
			t.Fatal(err)
		}
		if took, got, ok := k.WaitCapacity(fullCapacity, 10*time.Second); !ok {
			t.Errorf("after carrier came back: GetCapacity %v after %v, want %v", got, took.Round(time.Millisecond), fullCapacity)
		}
	})
}

// TestInitContainerMustInclude: an init container's device is handed on to the app container;
// the device manager then asks GetPreferredAllocation with must_include_deviceIDs set.
func TestInitContainerMustInclude(t *testing.T) {
	e := newEnv(t)
	k := e.startKubelet()
	e.startPlugin("kubelet")
	e.waitRegistered(k, "registration")
	one := *resource.NewQuantity(1, resource.DecimalSI)
	two := *resource.NewQuantity(2, resource.DecimalSI)
	p := pod("init-app", resDPDK, 2)
	p.Spec.InitContainers = []v1.Container{{
		Name: "init",
		Resources: v1.ResourceRequirements{
			Limits:   v1.ResourceList{resDPDK: one},
			Requests: v1.ResourceList{resDPDK: one},
		},
	}}
	p.Spec.Containers[0].Resources.Limits[resDPDK] = two
	k.AddPod(p)
	if err := k.M.Allocate(k.Ctx, p, &p.Spec.InitContainers[0], lifecycle.AddOperation); err != nil {
		t.Fatalf("Allocate(init): %v", err)
	}
	initDevs := sets.KeySet(k.M.GetDevices(string(p.UID), "init")[resDPDK])
	before := k.Log.Count("Issuing a GetPreferredAllocation call")
	if err := allocate(k, p); err != nil {
		t.Fatalf("Allocate(app) with the init container's device to reuse: %v", err)
	}
	appDevs := sets.New(allocated(k, p, resDPDK)...)
	t.Logf("init container got %v, app container %v; GetPreferredAllocation calls for the app: %d",
		sets.List(initDevs), sets.List(appDevs), k.Log.Count("Issuing a GetPreferredAllocation call")-before)
	if !appDevs.IsSuperset(initDevs) || appDevs.Len() != 2 {
		t.Errorf("app container got %v, want 2 devices including the init container's %v", sets.List(appDevs), sets.List(initDevs))
	}
	vfio := e.vfs("vfio-pci")
	l := sets.List(appDevs)
	if len(l) == 2 && vfio[l[0]].PF != vfio[l[1]].PF {
		t.Errorf("app container got %v across two PFs; packing around the must-include device keeps one PF", l)
	}
	o, err := k.M.GetDeviceRunContainerOptions(k.Ctx, p, &p.Spec.Containers[0])
	if err != nil {
		t.Fatalf("GetDeviceRunContainerOptions: %v", err)
	}
	checkDPDKOptions(t, e, o, l)
}

// TestNUMAAlignedRequest: with a topology-manager hint for NUMA node 1 the device manager offers
// GetPreferredAllocation only node 1's devices; the answer must come from that set.
func TestNUMAAlignedRequest(t *testing.T) {
	e := newEnv(t)
	k := e.startKubeletWithStore(NUMAHintStore{Nodes: []int{1}})
	e.startPlugin("kubelet")
	e.waitRegistered(k, "registration")
	p := pod("numa1-app", resNet, 2)
	k.AddPod(p)
	before := k.Log.Count("Issuing a GetPreferredAllocation call")
	if err := allocate(k, p); err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	got := allocated(k, p, resNet)
	calls := k.Log.Count("Issuing a GetPreferredAllocation call") - before
	t.Logf("NUMA-1 request got %v (GetPreferredAllocation calls: %d)", got, calls)
	vfs := e.vfs("bnxt_en")
	for _, id := range got {
		if vfs[id].NUMA != 1 {
			t.Errorf("device %s on NUMA %d handed out for a NUMA-1 aligned request", id, vfs[id].NUMA)
		}
	}
	if calls != 1 {
		t.Errorf("GetPreferredAllocation calls: %d, want 1", calls)
	}
}

// TestRepeatedKubeletRestarts restarts the device manager twenty times under one plugin
// process: every time each pool must register exactly once, promptly, without a refused
// Register; at the end the plugin stops and the last manager must see its devices go unhealthy.
// In odd-numbered restarts the plugin is a busy process: stopped (SIGSTOP) while the kubelet
// restarts and continued 50 ms later, so it finds its socket's removal and the new kubelet.sock
// waiting together, as a descheduled plugin on a loaded node does.
func TestRepeatedKubeletRestarts(t *testing.T) {
	e := newEnv(t)
	k := e.startKubelet()
	e.startPlugin("kubelet")
	e.waitRegistered(k, "registration")
	var worst time.Duration
	for i := 1; i <= 20; i++ {
		busy := i%2 == 1
		if busy {
			if err := e.plugin.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		regs0 := map[string]int{resNet: Registrations(resNet), resDPDK: Registrations(resDPDK)}
		refused0 := RefusedRegistrations()
		k = e.startKubelet()
		if busy {
			time.Sleep(50 * time.Millisecond)
			if err := e.plugin.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
		took, got, ok := k.WaitCapacity(fullCapacity, 20*time.Second)
		if !ok {
			t.Fatalf("restart %d: GetCapacity %v after %v", i, got, took.Round(time.Millisecond))
		}
		if took > worst {
			worst = took
		}
		time.Sleep(300 * time.Millisecond)
		name := fmt.Sprintf("restart %d", i)
		if busy {
			name += " busy plugin"
		}
		t.Run(name, func(t *testing.T) { checkRegisteredOnce(t, regs0, refused0) })
	}
	t.Logf("RE-REGISTRATION LATENCY over 20 restarts: worst %v (from the new kubelet's start, or from SIGCONT for a busy plugin)", worst.Round(time.Millisecond))
	if worst > reRegisterLimit {
		t.Errorf("worst re-registration %v, more than %v", worst.Round(time.Millisecond), reRegisterLimit)
	}
	if code, err := e.plugin.Stop(10 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: exit code %d, %v", code, err)
	}
	want := map[string]Counts{resNet: {Capacity: 12}, resDPDK: {Capacity: 4}}
	if _, got, ok := k.WaitCapacity(want, 5*time.Second); !ok {
		t.Errorf("after the plugin stopped: GetCapacity %v, want %v (devices unhealthy during the grace period)", got, want)
	}
}

// TestCDI runs the plugin with --cdi: the device manager must hand the runtime fully-qualified
// CDI device names, each defined in the pool's spec file in --cdi-dir with the device nodes the
// container needs; the device specs are then left to CDI (none in the Allocate answer).
func TestCDI(t *testing.T) {
	e := newEnv(t)
	k := e.startKubelet()
	e.startPlugin("kubelet", "--cdi")
	e.waitRegistered(k, "registration")
	p := pod("cdi-app", resDPDK, 2)
	k.AddPod(p)
	if err := allocate(k, p); err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	o, err := k.M.GetDeviceRunContainerOptions(k.Ctx, p, &p.Spec.Containers[0])
	if err != nil {
		t.Fatalf("GetDeviceRunContainerOptions: %v", err)
	}
	ids := allocated(k, p, resDPDK)
	env := envMap(o)
	t.Logf("envs: %v", env)
	t.Logf("devices: %+v", o.Devices)
	t.Logf("CDI devices: %+v", o.CDIDevices)
	got := strings.Split(env[envDPDK], ",")
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("%s=%q, want the allocated %v", envDPDK, env[envDPDK], ids)
	}
	if len(o.Devices) != 0 {
		t.Errorf("device specs %+v with --cdi, want none (the CDI spec carries the device nodes)", o.Devices)
	}
	specPath := filepath.Join(e.cdi, "sriov-dp-arm.com-ps225_dpdk.json")
	nodes := map[string][]string{}
	if b, err := os.ReadFile(specPath); err != nil {
		t.Errorf("CDI spec file: %v", err)
	} else {
		var spec struct {
			Kind    string `json:"kind"`
			Devices []struct {
				Name           string `json:"name"`
				ContainerEdits struct {
					DeviceNodes []struct {
						Path string `json:"path"`
					} `json:"deviceNodes"`
				} `json:"containerEdits"`
			} `json:"devices"`
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Errorf("%s: %v", specPath, err)
		}
		for _, d := range spec.Devices {
			var paths []string
			for _, n := range d.ContainerEdits.DeviceNodes {
				paths = append(paths, n.Path)
			}
			sort.Strings(paths)
			nodes[spec.Kind+"="+d.Name] = paths
		}
	}
	if len(o.CDIDevices) != len(ids) {
		t.Errorf("CDI devices %+v with --cdi, want one per allocated device %v", o.CDIDevices, ids)
	}
	vfio := e.vfs("vfio-pci")
	for _, c := range o.CDIDevices {
		paths, ok := nodes[c.Name]
		if !ok {
			t.Errorf("CDI device %q is not defined in %s (defines %v)", c.Name, specPath, sets.List(sets.KeySet(nodes)))
			continue
		}
		id := strings.TrimPrefix(c.Name, resDPDK+"=")
		want := []string{fmt.Sprintf("/dev/vfio/%d", vfio[id].Group), "/dev/vfio/vfio"}
		sort.Strings(want)
		if strings.Join(paths, ",") != strings.Join(want, ",") {
			t.Errorf("CDI device %q has device nodes %v, want %v", c.Name, paths, want)
		}
	}
}
