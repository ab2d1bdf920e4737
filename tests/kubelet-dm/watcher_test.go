package kubeletdm

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	plugin "k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

// runWatcher runs the kubelet's plugin manager (plugin watcher + reconciler) on the registry
// directory with the device manager's handler for "DevicePlugin" sockets, as the kubelet wires it.
func runWatcher(reg string, k *Kubelet) (stop func(), err error) {
	if err := os.MkdirAll(reg, 0o750); err != nil {
		return nil, err
	}
	pm := pluginmanager.NewPluginManager(reg, record.NewFakeRecorder(100))
	pm.AddHandler(registerapi.DevicePlugin, k.M.GetWatcherHandler())
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), k.Log.Logger()))
	stopCh := make(chan struct{})
	done := make(chan struct{})
	go func() {
		pm.Run(ctx, readySources{}, stopCh)
		close(done)
	}()
	return func() {
		close(stopCh)
		cancel()
		<-done
	}, nil
}

func (e *env) startWatcher(k *Kubelet) (stop func()) {
	e.t.Helper()
	stop, err := runWatcher(e.reg, k)
	if err != nil {
		e.t.Fatal(err)
	}
	return stop
}

// TestHarnessWatcherWithKubeletStub checks the watcher wiring against the kubelet's own stub
// plugin (grpc-go) serving in the registry directory.
func TestHarnessWatcherWithKubeletStub(t *testing.T) {
	dir := shortTempDir(t)
	k, err := StartKubelet(filepath.Join(dir, "device-plugins"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k.Stop() }()
	reg := filepath.Join(dir, "plugins_registry")
	stop, err := runWatcher(reg, k)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	devs := []*pluginapi.Device{{ID: "a", Health: pluginapi.Healthy}, {ID: "b", Health: pluginapi.Healthy}}
	stub := plugin.NewDevicePluginStub(k.Log.Logger(), devs, filepath.Join(reg, "stub.sock"), "arm.com/stub", false, false)
	if err := stub.Start(k.Ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stub.Stop(k.Log.Logger()) }()
	want := map[string]Counts{"arm.com/stub": {Capacity: 2, Allocatable: 2}}
	if took, got, ok := k.WaitCapacity(want, 10*time.Second); !ok {
		t.Fatalf("stub through the plugin watcher: GetCapacity %v after %v, want %v", got, took, want)
	} else {
		t.Logf("stub registered through the plugin watcher after %v", took.Round(time.Millisecond))
	}
}

// TestWatcherMode registers the plugin through the kubelet's plugin watcher (socket in the
// plugins registry, GetInfo / NotifyRegistrationStatus), then restarts the kubelet side and
// checks the plugin is picked up again.
func TestWatcherMode(t *testing.T) {
	e := newEnv(t)
	k1 := e.startKubelet()
	stop1 := e.startWatcher(k1)
	e.startPlugin("watcher")
	t.Run("GetInfo dialled as the plugin watcher dials", func(t *testing.T) { probeGetInfo(t, e) })
	took := e.waitRegistered(k1, "watcher registration")
	t.Logf("both resources registered through the plugin watcher and counted %v after the plugin started", took.Round(time.Millisecond))

	p := pod("dpdk-app", resDPDK, 2)
	k1.AddPod(p)
	if err := allocate(k1, p); err != nil {
		t.Fatalf("Allocate(pod requesting %s: 2): %v", resDPDK, err)
	}
	ids := allocated(k1, p, resDPDK)
	o, err := k1.M.GetDeviceRunContainerOptions(k1.Ctx, p, &p.Spec.Containers[0])
	if err != nil {
		t.Fatalf("GetDeviceRunContainerOptions: %v", err)
	}
	checkDPDKOptions(t, e, o, ids)

	// Kubelet restart: the plugins registry is not cleaned; the new plugin watcher finds the
	// plugin's socket there and registers it again.
	stop1()
	if err := k1.Stop(); err != nil {
		t.Fatalf("device manager stop: %v", err)
	}
	k2 := e.startKubelet(p)
	stop2 := e.startWatcher(k2)
	defer stop2()
	took, got, ok := k2.WaitCapacity(fullCapacity, 20*time.Second)
	if !ok {
		t.Fatalf("after the restart the new kubelet never counted the devices again: GetCapacity = %v after %v", got, took.Round(time.Millisecond))
	}
	t.Logf("WATCHER RE-REGISTRATION LATENCY: %v after the new kubelet started", took.Round(time.Millisecond))
	if got := allocated(k2, p, resDPDK); len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Errorf("after restart the manager has %v for the pod, want %v", got, ids)
	}
}

// probeGetInfo calls GetInfo on every registry socket the way the kubelet's plugin watcher does
// (pkg/kubelet/pluginmanager/operationexecutor: grpc-go, the socket path as the target, no
// authority override, so :authority is the percent-encoded path) and, for comparison, with
// :authority "localhost" (what the device manager's own client sends).
func probeGetInfo(t *testing.T, e *env) {
	var socks []string
	deadline := time.Now().Add(10 * time.Second)
	for len(socks) < 2 && time.Now().Before(deadline) {
		socks = socks[:0]
		ents, _ := os.ReadDir(e.reg)
		for _, de := range ents {
			if st, err := os.Stat(filepath.Join(e.reg, de.Name())); err == nil && st.Mode()&os.ModeSocket != 0 {
				socks = append(socks, filepath.Join(e.reg, de.Name()))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(socks) != 2 {
		t.Fatalf("registry sockets in %s: %v, want 2", e.reg, socks)
	}
	for _, sock := range socks {
		for _, authority := range []string{"", "localhost"} {
			opts := []grpc.DialOption{
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", addr)
				}),
			}
			if authority != "" {
				opts = append(opts, grpc.WithAuthority(authority))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			// The same call as the kubelet's operation executor (deprecated in grpc-go, still
			// what the kubelet does).
			conn, err := grpc.DialContext(ctx, sock, append(opts, grpc.WithBlock())...) //nolint:staticcheck
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			info, err := registerapi.NewRegistrationClient(conn).GetInfo(ctx, &registerapi.InfoRequest{})
			cancel()
			conn.Close()
			how := "as the plugin watcher dials (:authority = the escaped socket path)"
			if authority != "" {
				how = ":authority " + authority
			}
			if err != nil {
				t.Errorf("GetInfo on %s, %s: %v", filepath.Base(sock), how, err)
				continue
			}
			t.Logf("GetInfo on %s, %s: type=%s name=%s endpoint=%s versions=%v", filepath.Base(sock), how, info.Type, info.Name, info.Endpoint, info.SupportedVersions)
			if authority == "" && (info.Type != registerapi.DevicePlugin || info.Endpoint != sock) {
				t.Errorf("PluginInfo %+v: want type DevicePlugin and the socket's absolute path as endpoint", info)
			}
		}
	}
}
