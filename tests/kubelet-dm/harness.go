package kubeletdm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	_ "unsafe" // go:linkname

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	cadvisorapi "github.com/google/cadvisor/lib/model"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager/bitmask"
)

// newManagerImpl is the device manager's own constructor with the registration socket path as a
// parameter (the exported NewManagerImpl hard-codes /var/lib/kubelet/device-plugins/kubelet.sock,
// which the kubelet's own unit tests avoid the same way: by calling this constructor). The
// checkpoint lives in the socket's directory, as on a real node.
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(logger klog.Logger, socketPath string, topology []cadvisorapi.Node, topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

// NoHintStore is the topology-affinity store of a kubelet running the "none" topology-manager
// policy: no NUMA hint for any container.
type NoHintStore struct{}

func (NoHintStore) GetAffinity(klog.Logger, string, string) topologymanager.TopologyHint {
	return topologymanager.TopologyHint{}
}
func (NoHintStore) GetPolicy() topologymanager.Policy { return topologymanager.NewNonePolicy() }
func (NoHintStore) Name() string                      { return "none" }

// NUMAHintStore gives every container the same NUMA affinity, as the topology manager would
// for a pod admitted under a NUMA-aligning policy.
type NUMAHintStore struct{ Nodes []int }

func (s NUMAHintStore) GetAffinity(klog.Logger, string, string) topologymanager.TopologyHint {
	mask, err := bitmask.NewBitMask(s.Nodes...)
	if err != nil {
		panic(err)
	}
	return topologymanager.TopologyHint{NUMANodeAffinity: mask, Preferred: true}
}
func (NUMAHintStore) GetPolicy() topologymanager.Policy { return topologymanager.NewNonePolicy() }
func (NUMAHintStore) Name() string                      { return "fixed-numa-hint" }

// TwoNUMANodes is the machine topology given to the device manager (cadvisor's view).
var TwoNUMANodes = []cadvisorapi.Node{{Id: 0}, {Id: 1}}

// LogSink records every message the kubelet code logs (any verbosity), for assertions on what it
// did (e.g. whether it issued GetPreferredAllocation) and for failure reports.
type LogSink struct {
	mu    sync.Mutex
	lines []string
}

// Logger returns a logr.Logger writing into the sink at every verbosity.
func (s *LogSink) Logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lines = append(s.lines, time.Now().Format("15:04:05.000")+" "+prefix+" "+args)
	}, funcr.Options{Verbosity: 10})
}

// Lines returns the recorded lines.
func (s *LogSink) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// Summary returns the recorded lines up to verbosity 4 (the operation executor's per-second
// retries are at 5 and above).
func (s *LogSink) Summary() []string {
	var out []string
	for _, l := range s.Lines() {
		if strings.Contains(l, `"level"=5`) || strings.Contains(l, `"level"=6`) || strings.Contains(l, `"level"=7`) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// Count returns how many recorded lines contain sub.
func (s *LogSink) Count(sub string) int {
	n := 0
	for _, l := range s.Lines() {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// GlobalLog receives what the kubelet code logs through klog's global logger (set by the tests'
// TestMain): the registration server's gRPC handlers log there.
var GlobalLog = &LogSink{}

// Registrations counts Register calls the kubelet received for resource so far.
func Registrations(resource string) int {
	return GlobalLog.Count(`"msg"="Got registration request from device plugin with resource" "resourceName"="` + resource + `"`)
}

// RefusedRegistrations counts Register calls the kubelet answered with an error so far.
func RefusedRegistrations() int {
	return GlobalLog.Count(`"msg"="Error connecting to device plugin client"`) + GlobalLog.Count(`"msg"="Bad registration request from device plugin`)
}

// Kubelet is one incarnation of the kubelet's device manager.
type Kubelet struct {
	M    *devicemanager.ManagerImpl
	Log  *LogSink
	Ctx  context.Context
	mu   sync.Mutex
	pods []*v1.Pod
}

// StartKubelet creates and starts a device manager serving <dir>/kubelet.sock (after deleting
// every socket in dir, as a starting kubelet does) with its checkpoint in dir.
func StartKubelet(dir string, pods []*v1.Pod) (*Kubelet, error) {
	return StartKubeletWithStore(dir, pods, NoHintStore{})
}

// StartKubeletWithStore is StartKubelet with a given topology-affinity store.
func StartKubeletWithStore(dir string, pods []*v1.Pod, store topologymanager.Store) (*Kubelet, error) {
	k := &Kubelet{Log: &LogSink{}, pods: pods}
	logger := k.Log.Logger()
	k.Ctx = klog.NewContext(context.Background(), logger)
	m, err := newManagerImpl(logger, filepath.Join(dir, "kubelet.sock"), TwoNUMANodes, store)
	if err != nil {
		return nil, err
	}
	k.M = m
	err = m.Start(logger, k.activePods, readySources{}, containermap.NewContainerMap(), sets.New[string]())
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Kubelet) activePods() []*v1.Pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*v1.Pod(nil), k.pods...)
}

// AddPod makes pod active (the pod worker's view), so its allocations are kept.
func (k *Kubelet) AddPod(p *v1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pods = append(k.pods, p)
}

// Stop stops the registration server and disconnects every plugin.
func (k *Kubelet) Stop() error {
	return k.M.Stop(k.Log.Logger())
}

type readySources struct{}

func (readySources) AddSource(string) {}
func (readySources) AllReady() bool   { return true }

// Counts is one resource's capacity and allocatable as the device manager reports them.
type Counts struct{ Capacity, Allocatable int64 }

// Capacity returns GetCapacity() per resource name.
func (k *Kubelet) Capacity() map[string]Counts {
	capacity, alloc, _ := k.M.GetCapacity(k.Log.Logger())
	out := map[string]Counts{}
	for name, q := range capacity {
		c := out[string(name)]
		c.Capacity = q.Value()
		out[string(name)] = c
	}
	for name, q := range alloc {
		c := out[string(name)]
		c.Allocatable = q.Value()
		out[string(name)] = c
	}
	return out
}

// WaitCapacity polls GetCapacity until want holds for every resource in it or timeout passes;
// it returns the time waited and the last counts seen.
func (k *Kubelet) WaitCapacity(want map[string]Counts, timeout time.Duration) (time.Duration, map[string]Counts, bool) {
	start := time.Now()
	for {
		got := k.Capacity()
		ok := true
		for name, w := range want {
			if got[name] != w {
				ok = false
			}
		}
		if ok {
			return time.Since(start), got, true
		}
		if time.Since(start) > timeout {
			return time.Since(start), got, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Netns is a throwaway network namespace holding the netdevs the fake sysfs tree names (veth
// ends, up, with carrier), so the plugin's netlink view matches the tree.
type Netns struct {
	Name  string
	Peers map[string]string // netdev -> the other end of its veth
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// NewNetns creates the namespace with one veth pair per netdev of pfs (PFs and VFs), both ends up.
func NewNetns(name string, pfs []PF) (*Netns, error) {
	if err := run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	ns := &Netns{Name: name, Peers: map[string]string{}}
	n := 0
	addPair := func(ifname string) error {
		n++
		peer := fmt.Sprintf("kdmpeer%d", n)
		ns.Peers[ifname] = peer
		if err := run("ip", "-n", name, "link", "add", ifname, "type", "veth", "peer", "name", peer); err != nil {
			return err
		}
		if err := run("ip", "-n", name, "link", "set", peer, "up"); err != nil {
			return err
		}
		return run("ip", "-n", name, "link", "set", ifname, "up")
	}
	for _, pf := range pfs {
		if err := addPair(pf.Netdev); err != nil {
			ns.Delete()
			return nil, err
		}
		for _, vf := range pf.VFs {
			if vf.Netdev == "" {
				continue
			}
			if err := addPair(vf.Netdev); err != nil {
				ns.Delete()
				return nil, err
			}
		}
	}
	return ns, nil
}

// SetPeer sets the far end of netdev's veth up or down: down takes the carrier from netdev.
func (ns *Netns) SetPeer(netdev string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run("ip", "-n", ns.Name, "link", "set", ns.Peers[netdev], state)
}

// Uevent broadcasts a PCI uevent inside the namespace, as the kernel does after a driver binds
// or unbinds (a fake sysfs change makes none). Userspace uevents stay in the sending network
// namespace, so only the plugin under test hears it. driver is "" for an unbind.
func (ns *Netns) Uevent(action, addr, driver string) error {
	devpath := "/devices/pci0000:00/" + addr
	msg := fmt.Sprintf("%s@%s\x00ACTION=%s\x00DEVPATH=%s\x00SUBSYSTEM=pci\x00", action, devpath, action, devpath)
	if driver != "" {
		msg += "DRIVER=" + driver + "\x00"
	}
	errc := make(chan error, 1)
	go func() {
		// The thread enters the namespace and is never given back to the scheduler's pool.
		runtime.LockOSThread()
		errc <- func() error {
			f, err := os.Open(filepath.Join("/var/run/netns", ns.Name))
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("setns %s: %w", ns.Name, err)
			}
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Sendto(fd, []byte(msg), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1})
		}()
	}()
	return <-errc
}

// Delete removes the namespace (and every veth in it).
func (ns *Netns) Delete() { _ = run("ip", "netns", "del", ns.Name) }

// Plugin is a running sriov-device-plugin process.
type Plugin struct {
	Cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PluginBinary returns $SRIOV_DP_BIN, checked to be an executable file.
func PluginBinary() (string, error) {
	bin := os.Getenv("SRIOV_DP_BIN")
	if bin == "" {
		return "", errors.New("SRIOV_DP_BIN is not set: point it at the sriov-device-plugin binary (scripts/peer-kubelet.sh builds it and sets it)")
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("SRIOV_DP_BIN=%s: %v", bin, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("SRIOV_DP_BIN=%s is not an executable file", bin)
	}
	return bin, nil
}

// StartPlugin runs bin with args, inside network namespace netns when it is not "".
func StartPlugin(bin, netns string, args ...string) (*Plugin, error) {
	var cmd *exec.Cmd
	if netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", netns, bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	p := &Plugin{Cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.Env = append(os.Environ(), "RUST_BACKTRACE=1", "NO_COLOR=1")
	if os.Getenv("RUST_LOG") == "" {
		cmd.Env = append(cmd.Env, "RUST_LOG=debug,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info")
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Output is everything the plugin wrote so far.
func (p *Plugin) Output() string { return p.out.String() }

// Exited reports whether the process has ended, and its wait error.
func (p *Plugin) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to timeout (then SIGKILL); it returns the exit code.
func (p *Plugin) Stop(timeout time.Duration) (int, error) {
	if exited, _ := p.Exited(); !exited {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return -1, fmt.Errorf("no exit within %v of SIGTERM: killed", timeout)
	}
	return p.Cmd.ProcessState.ExitCode(), nil
}
