package kubeletdm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
)

const (
	resNet  = "arm.com/ps225_sriov_netdevice"
	resDPDK = "arm.com/ps225_dpdk"
	envDPDK = "PCIDEVICE_ARM_COM_PS225_DPDK"
	envNet  = "PCIDEVICE_ARM_COM_PS225_SRIOV_NETDEVICE"
	// How long the plugin may take to (re-)register after a kubelet (re)start: the contract
	// says it reacts to the filesystem event (upstream polls every 5 s).
	reRegisterLimit = 5 * time.Second
	// How long SIGTERM may take while the device manager holds its connections: the streams end
	// and the sockets go at once; a DaemonSet rollout waits for this.
	stopLimit = 1 * time.Second
)

var fullCapacity = map[string]Counts{
	resNet:  {Capacity: 12, Allocatable: 12},
	resDPDK: {Capacity: 4, Allocatable: 4},
}

// env is one node: fake sysfs and /dev, kubelet directories, pool config, netdevs.
type env struct {
	t                                         *testing.T
	dir, sys, dev, dp, reg, devinfo, cdi, cfg string
	pfs                                       []PF
	netns                                     string
	ns                                        *Netns
	bin                                       string
	plugin                                    *Plugin
	kubelets                                  []*Kubelet
}

var nsCounter atomic.Int32

func newEnv(t *testing.T) *env {
	t.Helper()
	bin, err := PluginBinary()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the fake tree's netdevs are real veths in a throwaway network namespace")
	}
	dir := shortTempDir(t)
	e := &env{t: t, dir: dir, bin: bin,
		sys: filepath.Join(dir, "sys"), dev: filepath.Join(dir, "dev"),
		dp: filepath.Join(dir, "device-plugins"), reg: filepath.Join(dir, "plugins_registry"),
		devinfo: filepath.Join(dir, "devinfo"), cdi: filepath.Join(dir, "cdi"),
		cfg: filepath.Join(dir, "config.json")}
	if e.pfs, err = BuildPS225(e.sys, e.dev); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.cfg, []byte(PS225Config), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{e.devinfo, e.cdi} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := NewNetns(fmt.Sprintf("kdm%d-%d", os.Getpid(), nsCounter.Add(1)), e.pfs)
	if err != nil {
		t.Fatal(err)
	}
	e.netns = ns.Name
	e.ns = ns
	t.Cleanup(func() {
		if e.plugin != nil {
			_, _ = e.plugin.Stop(5 * time.Second)
		}
		for _, k := range e.kubelets {
			_ = k.Stop()
		}
		if dir := os.Getenv("KUBELETDM_LOG_DIR"); dir != "" {
			saveLogs(t, dir, e)
		}
		if t.Failed() {
			if e.plugin != nil {
				t.Logf("---- plugin output ----\n%s", tail(e.plugin.Output(), 150))
			}
			for i, k := range e.kubelets {
				t.Logf("---- device manager #%d log ----\n%s", i+1, tail(strings.Join(k.Log.Summary(), "\n"), 80))
			}
		}
		ns.Delete()
	})
	return e
}

// saveLogs writes the plugin's whole output and every device manager's whole log to
// dir/<test>/, for a look beyond the tails printed on failure.
func saveLogs(t *testing.T, dir string, e *env) {
	d := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+time.Now().Format("-150405.000"))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Logf("log dir: %v", err)
		return
	}
	if e.plugin != nil {
		_ = os.WriteFile(filepath.Join(d, "plugin.log"), []byte(e.plugin.Output()), 0o644)
	}
	for i, k := range e.kubelets {
		_ = os.WriteFile(filepath.Join(d, fmt.Sprintf("kubelet-%d.log", i+1)), []byte(strings.Join(k.Log.Lines(), "\n")+"\n"), 0o644)
	}
	_ = os.WriteFile(filepath.Join(d, "klog-global.log"), []byte(strings.Join(GlobalLog.Lines(), "\n")+"\n"), 0o644)
}

// shortTempDir is a temporary directory with a short path: unix socket paths are limited to 107
// bytes, and t.TempDir() embeds the (long) test name.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kdm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d earlier lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func (e *env) startKubelet(pods ...*v1.Pod) *Kubelet {
	e.t.Helper()
	return e.startKubeletWithStore(NoHintStore{}, pods...)
}

func (e *env) startKubeletWithStore(store topologymanager.Store, pods ...*v1.Pod) *Kubelet {
	e.t.Helper()
	k, err := StartKubeletWithStore(e.dp, pods, store)
	if err != nil {
		e.t.Fatalf("device manager start: %v", err)
	}
	e.kubelets = append(e.kubelets, k)
	return k
}

func (e *env) startPlugin(mode string, extra ...string) {
	e.t.Helper()
	p, err := StartPlugin(e.bin, e.netns, append([]string{
		"--config", e.cfg, "--sysfs-root", e.sys, "--dev-root", e.dev,
		"--device-plugins-dir", e.dp, "--plugins-registry-dir", e.reg,
		"--registration", mode, "--devinfo-dir", e.devinfo, "--cdi-dir", e.cdi,
		"--resource-prefix", "arm.com"}, extra...)...)
	if err != nil {
		e.t.Fatalf("start %s: %v", e.bin, err)
	}
	e.plugin = p
}

// vfs returns the VFs of the layout bound to driver.
func (e *env) vfs(driver string) map[string]VF {
	out := map[string]VF{}
	for _, pf := range e.pfs {
		for _, vf := range pf.VFs {
			if vf.Driver == driver {
				out[vf.Addr] = vf
			}
		}
	}
	return out
}

func (e *env) waitRegistered(k *Kubelet, what string) time.Duration {
	e.t.Helper()
	start := time.Now()
	var took time.Duration
	var got map[string]Counts
	ok := false
	for time.Since(start) < 20*time.Second {
		took, got, ok = k.WaitCapacity(fullCapacity, 100*time.Millisecond)
		if ok {
			took = time.Since(start)
			break
		}
		if exited, werr := e.plugin.Exited(); exited {
			e.t.Fatalf("%s: the plugin exited (%v, %v) after %v; device manager saw GetCapacity = %v", what, e.plugin.Cmd.ProcessState, werr, time.Since(start).Round(time.Millisecond), got)
		}
	}
	if !ok {
		exited, werr := e.plugin.Exited()
		e.t.Fatalf("%s: device manager never counted the expected devices in %v: GetCapacity = %v, want %v (plugin exited: %v %v)",
			what, time.Since(start).Round(time.Millisecond), got, fullCapacity, exited, werr)
	}
	return took
}

func pod(name string, res string, n int64) *v1.Pod {
	q := *resource.NewQuantity(n, resource.DecimalSI)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: v1.PodSpec{Containers: []v1.Container{{
			Name: "app",
			Resources: v1.ResourceRequirements{
				Limits:   v1.ResourceList{v1.ResourceName(res): q},
				Requests: v1.ResourceList{v1.ResourceName(res): q},
			},
		}}},
	}
}

func allocate(k *Kubelet, p *v1.Pod) error {
	return k.M.Allocate(k.Ctx, p, &p.Spec.Containers[0], lifecycle.AddOperation)
}

func allocated(k *Kubelet, p *v1.Pod, res string) []string {
	ids := k.M.GetDevices(string(p.UID), p.Spec.Containers[0].Name)[res]
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func envMap(o *devicemanager.DeviceRunContainerOptions) map[string]string {
	m := map[string]string{}
	for _, e := range o.Envs {
		m[e.Name] = e.Value
	}
	return m
}

// pluginOptions asks every plugin socket in dir for its DevicePluginOptions, the way the device
// manager does at registration.
func pluginOptions(t *testing.T, dir string) map[string]*pluginapi.DevicePluginOptions {
	t.Helper()
	out := map[string]*pluginapi.DevicePluginOptions{}
	ents, _ := os.ReadDir(dir)
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		if st, err := os.Stat(p); err != nil || st.Mode()&os.ModeSocket == 0 || de.Name() == "kubelet.sock" {
			continue
		}
		conn, err := grpc.NewClient("unix://"+p, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		o, err := pluginapi.NewDevicePluginClient(conn).GetDevicePluginOptions(ctx, &pluginapi.Empty{})
		cancel()
		conn.Close()
		if err != nil {
			t.Errorf("GetDevicePluginOptions on %s: %v", p, err)
			continue
		}
		out[de.Name()] = o
	}
	return out
}

// TestKubeletMode registers the plugin with the kubelet's device manager over kubelet.sock,
// checks what the manager counts and allocates, restarts the manager on the same checkpoint
// directory and checks re-registration and the restored allocation.
func TestKubeletMode(t *testing.T) {
	e := newEnv(t)
	k1 := e.startKubelet()
	e.startPlugin("kubelet")
	took := e.waitRegistered(k1, "first registration")
	t.Logf("both resources registered and counted %v after the plugin started", took.Round(time.Millisecond))

	t.Run("devices and topology", func(t *testing.T) {
		all := k1.M.GetAllocatableDevices(k1.Log.Logger())
		for res, want := range map[string]map[string]VF{resNet: e.vfs("bnxt_en"), resDPDK: e.vfs("vfio-pci")} {
			got := all[res]
			ids := sets.KeySet(got)
			if !ids.Equal(sets.KeySet(want)) {
				t.Errorf("%s: device IDs %v, want %v", res, sets.List(ids), sets.List(sets.KeySet(want)))
			}
			for id, d := range got {
				vf, ok := want[id]
				if !ok {
					continue
				}
				if d.Health != pluginapi.Healthy {
					t.Errorf("%s %s: health %q", res, id, d.Health)
				}
				var nodes []int64
				if d.Topology != nil {
					for _, n := range d.Topology.Nodes {
						nodes = append(nodes, n.ID)
					}
				}
				if len(nodes) != 1 || nodes[0] != int64(vf.NUMA) {
					t.Errorf("%s %s: topology NUMA nodes %v, want [%d] (numa_node of the device)", res, id, nodes, vf.NUMA)
				}
			}
		}
	})

	opts := pluginOptions(t, e.dp)
	preferredAdvertised := 0
	for sock, o := range opts {
		t.Logf("plugin socket %s: pre_start_required=%v get_preferred_allocation_available=%v", sock, o.PreStartRequired, o.GetPreferredAllocationAvailable)
		if o.GetPreferredAllocationAvailable {
			preferredAdvertised++
		}
	}
	if len(opts) != 2 {
		t.Errorf("plugin sockets in %s answering GetDevicePluginOptions: %d, want 2 (one per pool)", e.dp, len(opts))
	}

	pod1 := pod("dpdk-app", resDPDK, 2)
	k1.AddPod(pod1)
	var alloc1 []string
	t.Run("allocate dpdk through the device manager", func(t *testing.T) {
		before := k1.Log.Count("Issuing a GetPreferredAllocation call")
		if err := allocate(k1, pod1); err != nil {
			t.Fatalf("Allocate(pod requesting %s: 2): %v", resDPDK, err)
		}
		alloc1 = allocated(k1, pod1, resDPDK)
		t.Logf("device manager allocated %v", alloc1)
		if len(alloc1) != 2 {
			t.Fatalf("allocated %v, want 2 devices", alloc1)
		}
		calls := k1.Log.Count("Issuing a GetPreferredAllocation call") - before
		t.Logf("GetPreferredAllocation calls issued by the device manager: %d (advertised by %d of %d plugin sockets)", calls, preferredAdvertised, len(opts))
		// docs/spec: we implement GetPreferredAllocation (pack per PF, NUMA-aware).
		if preferredAdvertised != len(opts) || calls != 1 {
			t.Errorf("GetPreferredAllocation: advertised by %d/%d sockets, called %d times during Allocate; the spec says we offer it and pack per PF", preferredAdvertised, len(opts), calls)
		}
		vfio := e.vfs("vfio-pci")
		if vfio[alloc1[0]].PF != vfio[alloc1[1]].PF {
			t.Errorf("allocation %v spans two PFs; the default packed policy should take both from one PF", alloc1)
		}
	})
	if len(alloc1) != 2 {
		t.FailNow()
	}

	var opts1 *devicemanager.DeviceRunContainerOptions
	t.Run("run container options", func(t *testing.T) {
		o, err := k1.M.GetDeviceRunContainerOptions(k1.Ctx, pod1, &pod1.Spec.Containers[0])
		if err != nil {
			t.Fatalf("GetDeviceRunContainerOptions: %v", err)
		}
		opts1 = o
		checkDPDKOptions(t, e, o, alloc1)
	})

	t.Run("device-info files", func(t *testing.T) {
		for _, id := range alloc1 {
			p := filepath.Join(e.devinfo, fmt.Sprintf("arm.com-ps225_dpdk-%s-device.json", id))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("device-info file: %v", err)
				continue
			}
			var di map[string]any
			if err := json.Unmarshal(b, &di); err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if di["type"] != "pci" {
				t.Errorf("%s: type %v, want pci", p, di["type"])
			}
			if pci, _ := di["pci"].(map[string]any); pci == nil || pci["pci-address"] != id {
				t.Errorf("%s: pci section %v, want pci-address %s", p, di["pci"], id)
			}
		}
	})

	pod3 := pod("netdev-app", resNet, 1)
	k1.AddPod(pod3)
	t.Run("allocate netdevice", func(t *testing.T) {
		if err := allocate(k1, pod3); err != nil {
			t.Fatalf("Allocate(pod requesting %s: 1): %v", resNet, err)
		}
		ids := allocated(k1, pod3, resNet)
		o, err := k1.M.GetDeviceRunContainerOptions(k1.Ctx, pod3, &pod3.Spec.Containers[0])
		if err != nil {
			t.Fatalf("GetDeviceRunContainerOptions: %v", err)
		}
		env := envMap(o)
		if len(ids) != 1 || env[envNet] != ids[0] {
			t.Errorf("allocated %v; %s=%q", ids, envNet, env[envNet])
		}
		if len(o.Devices) != 0 {
			t.Errorf("netdevice VF got device nodes %+v, want none", o.Devices)
		}
		var info map[string]map[string]map[string]string
		if err := json.Unmarshal([]byte(env[envNet+"_INFO"]), &info); err != nil {
			t.Errorf("%s_INFO=%q: %v", envNet, env[envNet+"_INFO"], err)
		} else if len(ids) == 1 && info[ids[0]]["generic"]["deviceID"] != ids[0] {
			t.Errorf("%s_INFO=%s: want generic.deviceID %s", envNet, env[envNet+"_INFO"], ids[0])
		}
	})

	// Kubelet restart: the old manager goes away, a new one on the same directory deletes every
	// socket there (the plugin's too), reads the checkpoint and serves a new kubelet.sock.
	if err := k1.Stop(); err != nil {
		t.Fatalf("device manager stop: %v", err)
	}
	regs0 := map[string]int{resNet: Registrations(resNet), resDPDK: Registrations(resDPDK)}
	refused0 := RefusedRegistrations()
	k2 := e.startKubelet(pod1, pod3)
	t.Run("re-registration after kubelet restart", func(t *testing.T) {
		took, got, ok := k2.WaitCapacity(fullCapacity, 20*time.Second)
		if !ok {
			t.Fatalf("after the restart the new device manager never counted the devices again: GetCapacity = %v after %v", got, took.Round(time.Millisecond))
		}
		t.Logf("RE-REGISTRATION LATENCY: both resources back in the new device manager %v after its start", took.Round(time.Millisecond))
		if took > reRegisterLimit {
			t.Errorf("re-registration took %v, more than %v", took.Round(time.Millisecond), reRegisterLimit)
		}
		time.Sleep(500 * time.Millisecond) // late duplicates
		checkRegisteredOnce(t, regs0, refused0)
	})

	t.Run("allocation restored from checkpoint", func(t *testing.T) {
		if got := allocated(k2, pod1, resDPDK); strings.Join(got, ",") != strings.Join(alloc1, ",") {
			t.Errorf("after restart the manager has %v for the pod, want %v", got, alloc1)
		}
		o, err := k2.M.GetDeviceRunContainerOptions(k2.Ctx, pod1, &pod1.Spec.Containers[0])
		if err != nil {
			t.Fatalf("GetDeviceRunContainerOptions after restart: %v", err)
		}
		if n := k2.Log.Count("Needs to re-allocate"); n != 0 {
			t.Errorf("the restarted manager re-allocated instead of using the checkpoint")
		}
		if opts1 != nil {
			a, b := envMap(opts1), envMap(o)
			for _, name := range []string{envDPDK, envDPDK + "_INFO"} {
				if a[name] != b[name] {
					t.Errorf("%s differs after restart: %q vs %q", name, a[name], b[name])
				}
			}
		}
		// The two restored devices are in use: three more cannot be had, the other two can.
		pod2 := pod("dpdk-more", resDPDK, 3)
		k2.AddPod(pod2)
		if err := allocate(k2, pod2); err == nil {
			t.Errorf("allocating 3 more dpdk VFs succeeded after restart: %v; only 2 are free", allocated(k2, pod2, resDPDK))
		}
		pod4 := pod("dpdk-rest", resDPDK, 2)
		k2.AddPod(pod4)
		if err := allocate(k2, pod4); err != nil {
			t.Fatalf("allocating the 2 free dpdk VFs after restart: %v", err)
		}
		got := allocated(k2, pod4, resDPDK)
		all := sets.KeySet(e.vfs("vfio-pci"))
		if !sets.New(got...).Equal(all.Difference(sets.New(alloc1...))) {
			t.Errorf("second pod got %v, want the two not given to the first (%v)", got, alloc1)
		}
	})

	t.Run("plugin stop", func(t *testing.T) {
		t0 := time.Now()
		code, err := e.plugin.Stop(10 * time.Second)
		if err != nil || code != 0 {
			t.Errorf("SIGTERM: exit code %d, %v; contract: 0 on a clean stop", code, err)
		}
		took := time.Since(t0)
		t.Logf("SIGTERM to exit with the device manager connected: %v", took.Round(time.Millisecond))
		if took > stopLimit {
			t.Errorf("SIGTERM to exit took %v, more than %v", took.Round(time.Millisecond), stopLimit)
		}
		ents, _ := os.ReadDir(e.dp)
		for _, de := range ents {
			if st, err := os.Stat(filepath.Join(e.dp, de.Name())); err == nil && st.Mode()&os.ModeSocket != 0 && de.Name() != "kubelet.sock" {
				t.Errorf("socket %s left behind after a clean stop", de.Name())
			}
		}
		want := map[string]Counts{resNet: {Capacity: 12}, resDPDK: {Capacity: 4}}
		if _, got, ok := k2.WaitCapacity(want, 5*time.Second); !ok {
			t.Errorf("after the plugin stopped: GetCapacity %v, want %v (devices unhealthy during the grace period)", got, want)
		}
	})
}

// checkRegisteredOnce: since the counts in regs0 / refused0 were taken, each pool called Register
// exactly once and the kubelet refused none. A second Register for a socket the kubelet already
// has connected is refused ("device plugin already connected"), and the kubelet's error path
// then forgets the working connection: when the plugin later goes away its devices are never
// marked unhealthy.
func checkRegisteredOnce(t *testing.T, regs0 map[string]int, refused0 int) {
	t.Helper()
	for res, n0 := range regs0 {
		if n := Registrations(res) - n0; n != 1 {
			t.Errorf("%s: %d Register calls to the restarted kubelet, want 1", res, n)
		}
	}
	if n := RefusedRegistrations() - refused0; n != 0 {
		var refused []string
		for _, l := range GlobalLog.Lines() {
			if strings.Contains(l, "Error connecting to device plugin client") {
				refused = append(refused, l)
			}
		}
		t.Errorf("the kubelet refused %d Register calls, the first: %s", n, refused[refused0])
	}
}

func checkDPDKOptions(t *testing.T, e *env, o *devicemanager.DeviceRunContainerOptions, ids []string) {
	t.Helper()
	vfio := e.vfs("vfio-pci")
	env := envMap(o)
	t.Logf("envs: %v", env)
	t.Logf("devices: %+v", o.Devices)
	t.Logf("mounts: %+v", o.Mounts)
	t.Logf("annotations: %+v", o.Annotations)
	t.Logf("CDI devices: %+v", o.CDIDevices)
	got := strings.Split(env[envDPDK], ",")
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("%s=%q, want the allocated %v", envDPDK, env[envDPDK], ids)
	}
	var info map[string]map[string]map[string]string
	if err := json.Unmarshal([]byte(env[envDPDK+"_INFO"]), &info); err != nil {
		t.Errorf("%s_INFO=%q is not the upstream JSON shape: %v", envDPDK, env[envDPDK+"_INFO"], err)
	}
	if !sets.KeySet(info).Equal(sets.New(ids...)) {
		t.Errorf("%s_INFO keys %v, want %v", envDPDK, sets.List(sets.KeySet(info)), ids)
	}
	wantDev := map[string]bool{"/dev/vfio/vfio": true}
	for _, id := range ids {
		grp := fmt.Sprintf("/dev/vfio/%d", vfio[id].Group)
		wantDev[grp] = true
		i := info[id]
		if i["generic"]["deviceID"] != id {
			t.Errorf("_INFO[%s].generic = %v, want deviceID %s", id, i["generic"], id)
		}
		if i["vfio"]["mount"] != "/dev/vfio/vfio" || i["vfio"]["dev-mount"] != grp {
			t.Errorf("_INFO[%s].vfio = %v, want mount /dev/vfio/vfio, dev-mount %s", id, i["vfio"], grp)
		}
	}
	gotDev := map[string]bool{}
	for _, d := range o.Devices {
		gotDev[d.PathOnHost] = true
		if d.PathInContainer != d.PathOnHost {
			t.Errorf("device %s mapped to %s in the container", d.PathOnHost, d.PathInContainer)
		}
		if !strings.Contains(d.Permissions, "r") || !strings.Contains(d.Permissions, "w") {
			t.Errorf("device %s permissions %q, want read and write", d.PathOnHost, d.Permissions)
		}
		if strings.HasPrefix(d.PathOnHost, e.dir) {
			t.Errorf("device %s: a --dev-root path leaked; the kubelet must get the real /dev path", d.PathOnHost)
		}
	}
	if !sets.KeySet(gotDev).Equal(sets.KeySet(wantDev)) {
		t.Errorf("device nodes %v, want %v", sets.List(sets.KeySet(gotDev)), sets.List(sets.KeySet(wantDev)))
	}
	for _, c := range o.CDIDevices {
		kind, name, ok := strings.Cut(c.Name, "=")
		if !ok || !strings.Contains(kind, "/") || name == "" {
			t.Errorf("CDI device name %q is not fully qualified (vendor.com/class=name)", c.Name)
		}
	}
}
