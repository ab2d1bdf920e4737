// Command libcni-harness drives CNI plugins through the reference runtime library (libcni), the
// way container runtimes do: it loads a conflist and runs ADD, CHECK or DEL on it.
//
//	libcni-harness -conflist f.conflist -bin dir1:dir2 -cache dir \
//	    -id ctr -netns /run/netns/x -ifname net1 -device 0000:03:10.1 add|check|del
//
// ADD prints the result JSON on stdout. Any failure prints the error and exits 1.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	conflist := flag.String("conflist", "", "network configuration list file")
	bin := flag.String("bin", "", "plugin directories, colon-separated")
	cache := flag.String("cache", "", "libcni cache directory")
	id := flag.String("id", "", "container ID")
	netns := flag.String("netns", "", "network namespace path")
	ifname := flag.String("ifname", "net1", "interface name")
	device := flag.String("device", "", "deviceID capability (VF PCI address)")
	flag.Parse()
	if flag.NArg() != 1 {
		fail(fmt.Errorf("expected one command: add, check or del"))
	}
	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		fail(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(*bin, ":"), *cache, nil)
	rt := &libcni.RuntimeConf{
		ContainerID:    *id,
		NetNS:          *netns,
		IfName:         *ifname,
		CapabilityArgs: map[string]interface{}{},
	}
	if *device != "" {
		rt.CapabilityArgs["deviceID"] = *device
	}
	ctx := context.Background()
	switch flag.Arg(0) {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		out, err := json.Marshal(res)
		if err != nil {
			fail(err)
		}
		fmt.Println(string(out))
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown command %q", flag.Arg(0)))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "libcni-harness:", err)
	os.Exit(1)
}
