// Command vcsim runs an in-memory vCenter (govmomi's simulator, VPX model)
// for tests and local trials of the image builder.
//
// Build: GOPATH=/usr/share/gocode GO111MODULE=off go build -o vcsim main.go
//
// Once it serves, it writes -ready-file (JSON with url, host, username,
// password, pid), and it runs until SIGTERM or SIGINT.
package main

import (
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

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // REST API (/rest), used by Packer's vSphere driver
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

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	username := flag.String("username", "user", "login user name")
	password := flag.String("password", "pass", "login password")
	readyFile := flag.String("ready-file", "", "write connection details as JSON to this file once serving")
	model := simulator.VPX()
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "standalone hosts per datacenter")
	flag.IntVar(&model.Machine, "vm", model.Machine, "virtual machines per resource pool")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "datastores")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "distributed port groups per datacenter")
	flag.Parse()
	log.SetPrefix("vcsim: ")
	log.SetFlags(0)

	if err := model.Create(); err != nil {
		log.Fatalf("creating the model: %v", err)
	}
	defer model.Remove() // the datastores' temporary directories

	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}

	server := model.Service.NewServer()
	defer server.Close()

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
