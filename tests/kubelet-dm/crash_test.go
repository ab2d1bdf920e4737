package kubeletdm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// childKubeletEnv makes the test binary act as a kubelet process: it runs a device manager on
// the given directory and prints GetCapacity as one JSON line every 20 ms until killed.
const childKubeletEnv = "KUBELETDM_CHILD_KUBELET_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childKubeletEnv); dir != "" {
		k, err := StartKubelet(dir, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child kubelet:", err)
			os.Exit(1)
		}
		enc := json.NewEncoder(os.Stdout)
		for {
			_ = enc.Encode(k.Capacity())
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Whatever the kubelet code logs without a logger in its context (the registration server's
	// gRPC handlers) goes here, for assertions on Register calls and their errors.
	klog.SetLogger(GlobalLog.Logger())
	os.Exit(m.Run())
}

// TestKubeletCrash kills a kubelet process with SIGKILL (its kubelet.sock stays behind, its
// connections die with it) and starts a new device manager on the same directory.
func TestKubeletCrash(t *testing.T) {
	e := newEnv(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(self, "-test.run=^$")
	child.Env = append(os.Environ(), childKubeletEnv+"="+e.dp)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	e.startPlugin("kubelet")

	registered := make(chan map[string]Counts, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var last map[string]Counts
		for sc.Scan() {
			var c map[string]Counts
			if json.Unmarshal(sc.Bytes(), &c) != nil {
				continue
			}
			last = c
			ok := true
			for name, w := range fullCapacity {
				if c[name] != w {
					ok = false
				}
			}
			if ok {
				registered <- c
				return
			}
		}
		registered <- last
	}()
	select {
	case c := <-registered:
		for name, w := range fullCapacity {
			if c[name] != w {
				t.Fatalf("kubelet process: GetCapacity %v, want %v", c, fullCapacity)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("kubelet process never counted the devices")
	}

	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if _, err := os.Stat(filepath.Join(e.dp, "kubelet.sock")); err != nil {
		t.Logf("note: kubelet.sock is gone after SIGKILL (%v)", err)
	}
	time.Sleep(200 * time.Millisecond) // the plugin sees the dead kubelet before the new one starts

	k := e.startKubelet()
	took, got, ok := k.WaitCapacity(fullCapacity, 20*time.Second)
	if !ok {
		t.Fatalf("after a kubelet crash and restart the new device manager never counted the devices: GetCapacity %v after %v", got, took.Round(time.Millisecond))
	}
	t.Logf("RE-REGISTRATION LATENCY after a kubelet crash: %v after the new device manager started", took.Round(time.Millisecond))
	if took > reRegisterLimit {
		t.Errorf("re-registration after a crash took %v, more than %v", took.Round(time.Millisecond), reRegisterLimit)
	}
}

// TestPluginCrash kills the plugin with SIGKILL under a running device manager (its sockets stay
// behind, as after a DaemonSet container restart) and starts it again on the same directory:
// each pool registers once, the capacity comes back unchanged, and the new plugin then idles
// (it must not take its own removal of the stale socket for a kubelet restart).
func TestPluginCrash(t *testing.T) {
	e := newEnv(t)
	k := e.startKubelet()
	e.startPlugin("kubelet")
	e.waitRegistered(k, "first registration")
	regs0 := map[string]int{resNet: Registrations(resNet), resDPDK: Registrations(resDPDK)}
	refused0 := RefusedRegistrations()

	if err := e.plugin.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-e.plugin.done
	for _, s := range []string{"arm.com_ps225_sriov_netdevice.sock", "arm.com_ps225_dpdk.sock"} {
		if st, err := os.Lstat(filepath.Join(e.dp, s)); err != nil || st.Mode()&os.ModeSocket == 0 {
			t.Errorf("%s: the killed plugin's socket should stay behind (%v)", s, err)
		}
	}
	// The device manager sees the plugin gone: its devices turn unhealthy, the capacity stays.
	gone := map[string]Counts{resNet: {Capacity: 12}, resDPDK: {Capacity: 4}}
	if _, got, ok := k.WaitCapacity(gone, 5*time.Second); !ok {
		t.Errorf("after the plugin's SIGKILL: GetCapacity %v, want %v", got, gone)
	}

	e.startPlugin("kubelet")
	took := e.waitRegistered(k, "registration after a plugin SIGKILL")
	t.Logf("RE-REGISTRATION after a plugin SIGKILL: both resources counted again %v after the new plugin started", took.Round(time.Millisecond))
	time.Sleep(time.Second) // a Register storm, if any, shows by now
	checkRegisteredOnce(t, regs0, refused0)
	if got := k.Capacity(); got[resNet] != fullCapacity[resNet] || got[resDPDK] != fullCapacity[resDPDK] {
		t.Errorf("GetCapacity %v after the restart, want %v", got, fullCapacity)
	}
	out := e.plugin.Output()
	lines, again := strings.Count(out, "\n"), strings.Count(out, "serving again")
	t.Logf("PLUGIN OUTPUT after a SIGKILL restart: %d lines, \"serving again\" %d times", lines, again)
	if again != 0 || lines > 400 {
		t.Errorf("the restarted plugin loops: %d output lines, %d \"serving again\"", lines, again)
	}
}
