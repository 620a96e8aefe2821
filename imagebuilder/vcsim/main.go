// Command vcsim runs an in-memory vCenter (govmomi's simulator, VPX model)
// for tests and local trials of the image builder.
//
// Build: imagebuilder.vcsim.build() (python -m imagebuilder vcsim-build builds
// it too): GOPATH=<private copy of Debian's govmomi simulator with export.go
// added>:/usr/share/gocode GO111MODULE=off go build -o vcsim main.go
//
// Once it serves, it writes -ready-file (JSON with url, host, username,
// password, pid), and it runs until SIGTERM or SIGINT.
//
// With -power-off-after D, every VM powered on after start is powered off D
// later, as a guest does at the end of an unattended install: Packer's
// vsphere-iso with "communicator": "none" waits for that shutdown.
//
// VMs can be exported (ExportVm, OvfManager.CreateDescriptor: export.go);
// with -fail-export-get every export download breaks half-way, for tests.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // REST API (/rest): content library, tags
	"github.com/vmware/govmomi/vim25/types"
)

type ready struct {
	URL      string `json:"url"`
	Host     string `json:"host"`
	Username string `json:"username"`
	Password string `json:"password"`
	PID      int    `json:"pid"`
}

// writeAtomic writes data to path via a temporary file and a rename, so a
// reader never sees a partial file.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vcsim-ready-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// powerOffGuests powers off, through the API, each VM that was powered on
// after since and has been running for at least after.
func powerOffGuests(u *url.URL, since time.Time, after time.Duration) {
	ctx := context.Background()
	client, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		log.Printf("power-off-after disabled: %v", err)
		return
	}
	for range time.Tick(200 * time.Millisecond) {
		for _, entity := range simulator.Map.All("VirtualMachine") {
			vm := entity.(*simulator.VirtualMachine)
			var boot time.Time
			simulator.Map.WithLock(vm, func() {
				if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn && vm.Summary.Runtime.BootTime != nil {
					boot = *vm.Summary.Runtime.BootTime
				}
			})
			if boot.After(since) && time.Since(boot) >= after {
				if task, err := object.NewVirtualMachine(client.Client, vm.Self).PowerOff(ctx); err == nil {
					_ = task.Wait(ctx) // fails harmlessly if someone else powered it off first
				}
			}
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	username := flag.String("username", "user", "login user name")
	password := flag.String("password", "pass", "login password")
	readyFile := flag.String("ready-file", "", "write connection details as JSON to this file once serving")
	model := simulator.VPX()
	powerOffAfter := flag.Duration("power-off-after", 0, "power off VMs this long after they are powered on (0: never)")
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "standalone hosts per datacenter")
	flag.IntVar(&model.Machine, "vm", model.Machine, "virtual machines per resource pool")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "datastores")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "distributed port groups per datacenter")
	flag.BoolVar(&simulator.ExportFailHalfway, "fail-export-get", false,
		"break every export download (NFC GET) half-way, as a failing network would")
	flag.Parse()
	log.SetPrefix("vcsim: ")
	log.SetFlags(0)

	if err := model.Create(); err != nil {
		log.Fatalf("creating the model: %v", err)
	}
	defer model.Remove() // the datastores' temporary directories
	defer simulator.RemoveExportFiles()

	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}

	started := time.Now()
	server := model.Service.NewServer()
	defer server.Close()
	if *powerOffAfter > 0 {
		go powerOffGuests(server.URL, started, *powerOffAfter)
	}

	// Trap the signals before announcing readiness, so a parent that stops
	// us right after reading the ready file still gets a clean shutdown.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	sdk := *server.URL
	sdk.User = nil
	info := ready{sdk.String(), sdk.Host, *username, *password, os.Getpid()}
	if *readyFile != "" {
		data, _ := json.MarshalIndent(info, "", "  ")
		if err := writeAtomic(*readyFile, append(data, '\n')); err != nil {
			log.Printf("writing %s: %v", *readyFile, err)
			return // run the deferred clean-up
		}
	}
	fmt.Printf("serving %s\n", info.URL)

	sig := <-signals
	log.Printf("%v: stopping", sig)
	if *readyFile != "" {
		os.Remove(*readyFile)
	}
}
