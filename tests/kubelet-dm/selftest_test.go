package kubeletdm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	plugin "k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1"
)

// TestHarnessWithKubeletStub checks the harness itself against the kubelet's own stub device
// plugin (no sriov-device-plugin involved): registration over kubelet.sock, GetCapacity, an
// allocation that goes through GetPreferredAllocation (seen in the manager's log), and the
// checkpoint read by a restarted manager.
func TestHarnessWithKubeletStub(t *testing.T) {
	dir := shortTempDir(t)
	k1, err := StartKubelet(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	devs := []*pluginapi.Device{
		{ID: "a", Health: pluginapi.Healthy}, {ID: "b", Health: pluginapi.Healthy},
		{ID: "c", Health: pluginapi.Healthy}, {ID: "d", Health: pluginapi.Healthy},
	}
	stub := plugin.NewDevicePluginStub(k1.Log.Logger(), devs, filepath.Join(dir, "stub.sock"), "arm.com/stub", false, true)
	stub.SetAllocFunc(func(r *pluginapi.AllocateRequest, _ map[string]*pluginapi.Device) (*pluginapi.AllocateResponse, error) {
		resp := &pluginapi.AllocateResponse{}
		for _, c := range r.ContainerRequests {
			resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
				Envs: map[string]string{"STUB_DEVICES": strings.Join(c.DevicesIds, ",")},
			})
		}
		return resp, nil
	})
	if err := stub.Start(k1.Ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stub.Stop(k1.Log.Logger()) }()
	if err := stub.Register(k1.Ctx, filepath.Join(dir, "kubelet.sock"), "arm.com/stub", dir); err != nil {
		t.Fatalf("stub Register: %v", err)
	}
	want := map[string]Counts{"arm.com/stub": {Capacity: 4, Allocatable: 4}}
	if _, got, ok := k1.WaitCapacity(want, 10*time.Second); !ok {
		t.Fatalf("GetCapacity %v, want %v", got, want)
	}
	p := pod("stub-app", "arm.com/stub", 2)
	k1.AddPod(p)
	if err := allocate(k1, p); err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	ids := allocated(k1, p, "arm.com/stub")
	if len(ids) != 2 {
		t.Fatalf("allocated %v", ids)
	}
	if n := k1.Log.Count("Issuing a GetPreferredAllocation call"); n != 1 {
		t.Errorf("GetPreferredAllocation calls seen in the manager log: %d, want 1", n)
	}
	if err := k1.Stop(); err != nil {
		t.Fatal(err)
	}
	k2, err := StartKubelet(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k2.Stop() }()
	got := allocated(k2, p, "arm.com/stub")
	if len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Errorf("restarted manager has %v from the checkpoint, want %v", got, ids)
	}
}
