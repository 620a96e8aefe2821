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
//
// The Content Library REST API (/rest) is govmomi 0.24's vapi simulator
// behind a shim (libraryShim below): the uploads of an update session are
// staged and reach the library item only when the session completes, after
// their sizes and checksums (checksum_info) are checked, as on a vCenter;
// "fail", "cancel" and deleting the session drop them; "validate" and
// "remove" work. Kept from 0.24 as it is: a file named *.ova is reduced to
// its .ovf; a deploy (vcenter/ovf/library-item ?~action=deploy) reads only
// the item's .ovf and imports it, so the deployed VM has the descriptor's
// hardware and disk capacities but no disk contents (no simulator VM has
// any); a REST login takes any non-empty user and password.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"sync"
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
	password := flag.String("password", "pass", "login password (VCSIM_PASSWORD in the environment wins: a command line is readable by every user)")
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
	if env, ok := os.LookupEnv("VCSIM_PASSWORD"); ok {
		*password = env
	}
	log.SetPrefix("vcsim: ")
	log.SetFlags(0)

	if err := model.Create(); err != nil {
		log.Fatalf("creating the model: %v", err)
	}
	defer model.Remove() // the datastores' temporary directories
	defer simulator.RemoveExportFiles()

	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	staging, err := os.MkdirTemp("", "vcsim-library-")
	if err != nil {
		log.Fatalf("staging directory: %v", err)
	}
	defer os.RemoveAll(staging)
	simulator.RegisterEndpoint(func(s *simulator.Service, _ *simulator.Registry) {
		registerLibraryShim(s, staging)
	})
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

// Content Library shim: paths of govmomi 0.24's vapi simulator it wraps.
const (
	dataPrefix    = "/rest/com/vmware/cis/data/"
	filePrefix    = "/rest/com/vmware/content/library/item/updatesession/file/"
	sessionPrefix = "/rest/com/vmware/content/library/item/update-session/"
	sessionHeader = "vmware-api-session-id"
)

// libraryShim stages the uploads of update sessions (see the file's comment).
type libraryShim struct {
	vapi     http.Handler
	dir      string
	mu       sync.Mutex
	sessions map[string]*updateSession // update session id ->
	uploads  map[string]string         // upload file id -> update session id
}

type expectedFile struct {
	algorithm, checksum string
	size                int64
}

type stagedFile struct {
	path, digest, uploadPath string
	size                     int64
}

type updateSession struct {
	auth     string // the REST session that added the files
	expected map[string]expectedFile
	staged   map[string]stagedFile
}

func registerLibraryShim(s *simulator.Service, dir string) {
	vapi, pattern := s.ServeMux.Handler(&http.Request{Method: "GET", URL: &url.URL{Path: "/rest/"}})
	if pattern != "/rest/" {
		log.Printf("no vAPI simulator at /rest/: the Content Library shim is off")
		return
	}
	shim := &libraryShim{vapi: vapi, dir: dir, sessions: map[string]*updateSession{},
		uploads: map[string]string{}}
	s.Handle(dataPrefix, http.HandlerFunc(shim.data))
	s.Handle(filePrefix, http.HandlerFunc(shim.file))
	s.Handle(sessionPrefix, http.HandlerFunc(shim.session))
	// The paths without the slash are the vAPI simulator's alone (ServeMux would
	// redirect them to the patterns above otherwise).
	s.Handle(strings.TrimSuffix(filePrefix, "/"), vapi)
	s.Handle(strings.TrimSuffix(sessionPrefix, "/"), vapi)
}

func vapiError(w http.ResponseWriter, status int, kind, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]interface{}{"type": kind, "value": map[string]interface{}{
		"messages": []map[string]string{{"id": kind, "default_message": message}}}})
}

func idOf(p string) string { return strings.TrimPrefix(path.Base(p), "id:") }

// forward hands a request to the vAPI simulator, recording its answer.
func (l *libraryShim) forward(r *http.Request, body []byte) *httptest.ResponseRecorder {
	clone := r.Clone(r.Context())
	clone.Body = io.NopCloser(bytes.NewReader(body))
	clone.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	l.vapi.ServeHTTP(rec, clone)
	return rec
}

func replay(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (l *libraryShim) file(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		vapiError(w, http.StatusBadRequest, "com.vmware.vapi.std.errors.invalid_argument", err.Error())
		return
	}
	sid, action := idOf(r.URL.Path), r.URL.Query().Get("~action")
	switch action {
	case "add":
		rec := l.forward(r, body)
		if rec.Code == http.StatusOK {
			l.added(sid, r.Header.Get(sessionHeader), body, rec.Body.Bytes())
		}
		replay(w, rec)
	case "validate":
		l.validate(w, sid)
	case "remove": // 0.24 would drop the whole session
		var spec struct {
			Name string `json:"file_name"`
		}
		_ = json.Unmarshal(body, &spec)
		l.mu.Lock()
		if up := l.sessions[sid]; up != nil {
			if f, ok := up.staged[spec.Name]; ok {
				os.Remove(f.path)
			}
			delete(up.staged, spec.Name)
			delete(up.expected, spec.Name)
		}
		l.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	default:
		replay(w, l.forward(r, body))
	}
}

func (l *libraryShim) added(sid, auth string, request, response []byte) {
	var spec struct {
		File struct {
			Name     string `json:"name"`
			Size     int64  `json:"size"`
			Checksum *struct {
				Algorithm string `json:"algorithm"`
				Checksum  string `json:"checksum"`
			} `json:"checksum_info"`
		} `json:"file_spec"`
	}
	var answer struct {
		Value struct {
			Upload *struct {
				URI string `json:"uri"`
			} `json:"upload_endpoint"`
		} `json:"value"`
	}
	if json.Unmarshal(request, &spec) != nil || json.Unmarshal(response, &answer) != nil ||
		answer.Value.Upload == nil {
		return
	}
	u, err := url.Parse(answer.Value.Upload.URI)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	up := l.sessions[sid]
	if up == nil {
		up = &updateSession{auth: auth, expected: map[string]expectedFile{}, staged: map[string]stagedFile{}}
		l.sessions[sid] = up
	}
	want := expectedFile{size: spec.File.Size}
	if spec.File.Checksum != nil {
		want.algorithm = strings.ToUpper(spec.File.Checksum.Algorithm)
		want.checksum = strings.ToLower(spec.File.Checksum.Checksum)
	}
	up.expected[spec.File.Name] = want
	l.uploads[idOf(path.Dir(u.Path))] = sid
}

func newHash(algorithm string) hash.Hash {
	switch algorithm {
	case "SHA1":
		return sha1.New()
	case "SHA512":
		return sha512.New()
	}
	return sha256.New()
}

// data stages a PUT of a file's bytes (the vAPI simulator would write them into
// the item at once, holding its lock for the whole transfer).
func (l *libraryShim) data(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		l.vapi.ServeHTTP(w, r)
		return
	}
	fid, name := path.Base(path.Dir(r.URL.Path)), path.Base(r.URL.Path)
	l.mu.Lock()
	up := l.sessions[l.uploads[fid]]
	var want expectedFile
	if up != nil {
		want = up.expected[name]
	}
	l.mu.Unlock()
	if up == nil || r.Header.Get(sessionHeader) != up.auth {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	staged, err := os.CreateTemp(l.dir, "upload-")
	if err != nil {
		vapiError(w, http.StatusInternalServerError, "com.vmware.vapi.std.errors.error", err.Error())
		return
	}
	digest := newHash(want.algorithm)
	n, err := io.Copy(io.MultiWriter(staged, digest), r.Body)
	if closeErr := staged.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		os.Remove(staged.Name())
		vapiError(w, http.StatusBadRequest, "com.vmware.vapi.std.errors.invalid_argument",
			fmt.Sprintf("upload of %s broke off after %d bytes: %v", name, n, err))
		return
	}
	l.mu.Lock()
	if old, ok := up.staged[name]; ok {
		os.Remove(old.path)
	}
	up.staged[name] = stagedFile{staged.Name(), hex.EncodeToString(digest.Sum(nil)), r.URL.Path, n}
	l.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// problems are the files a session cannot complete with: missing, or of
// another size or checksum than their file_spec said.
func (up *updateSession) problems() (missing []string, invalid map[string]string) {
	invalid = map[string]string{}
	for name, want := range up.expected {
		got, ok := up.staged[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case want.size > 0 && got.size != want.size:
			invalid[name] = fmt.Sprintf("%d bytes were uploaded, the file_spec said %d", got.size, want.size)
		case want.checksum != "" && got.digest != want.checksum:
			invalid[name] = fmt.Sprintf("its %s checksum is %s, the file_spec said %s",
				want.algorithm, got.digest, want.checksum)
		}
	}
	return missing, invalid
}

func (l *libraryShim) validate(w http.ResponseWriter, sid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	up := l.sessions[sid]
	missing, invalid := []string{}, map[string]string{}
	if up != nil {
		missing, invalid = up.problems()
	}
	files := []map[string]interface{}{}
	for name, why := range invalid {
		files = append(files, map[string]interface{}{"name": name,
			"error_message": map[string]string{"id": "invalid", "default_message": why}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]interface{}{"value": map[string]interface{}{
		"has_errors": len(missing)+len(invalid) > 0, "missing_files": missing, "invalid_files": files}})
}

// drop forgets a session's staged files.
func (l *libraryShim) drop(sid string) *updateSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	up := l.sessions[sid]
	delete(l.sessions, sid)
	for fid, s := range l.uploads {
		if s == sid {
			delete(l.uploads, fid)
		}
	}
	return up
}

func (l *libraryShim) session(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	sid, action := idOf(r.URL.Path), r.URL.Query().Get("~action")
	if r.Method == http.MethodPost && action == "complete" {
		l.complete(w, r, sid, body)
		return
	}
	if r.Method == http.MethodDelete || action == "fail" || action == "cancel" {
		if up := l.drop(sid); up != nil {
			for _, f := range up.staged {
				os.Remove(f.path)
			}
		}
	}
	replay(w, l.forward(r, body))
}

// complete checks the staged files, hands them to the vAPI simulator and completes;
// a session with a missing or damaged file fails instead, and nothing reaches the item.
func (l *libraryShim) complete(w http.ResponseWriter, r *http.Request, sid string, body []byte) {
	up := l.drop(sid)
	if up == nil {
		replay(w, l.forward(r, body))
		return
	}
	defer func() {
		for _, f := range up.staged {
			os.Remove(f.path)
		}
	}()
	missing, invalid := up.problems()
	var why []string
	for _, name := range missing {
		why = append(why, name+": not uploaded")
	}
	for name, problem := range invalid {
		why = append(why, name+": "+problem)
	}
	for name, f := range up.staged {
		if len(why) > 0 {
			break
		}
		put, err := http.NewRequestWithContext(r.Context(), http.MethodPut, f.uploadPath, nil)
		if err == nil {
			data, readErr := os.ReadFile(f.path)
			if readErr != nil {
				err = readErr
			} else {
				put.Header.Set(sessionHeader, up.auth)
				if rec := l.forward(put, data); rec.Code != http.StatusOK {
					err = fmt.Errorf("HTTP %d", rec.Code)
				}
			}
		}
		if err != nil {
			why = append(why, name+": "+err.Error())
		}
	}
	if len(why) > 0 {
		fail := r.Clone(r.Context())
		fail.URL.RawQuery = "~action=fail"
		l.forward(fail, []byte(`{"client_error_message":"validation failed"}`))
		vapiError(w, http.StatusBadRequest, "com.vmware.vapi.std.errors.invalid_argument",
			"the update session failed validation: "+strings.Join(why, "; "))
		return
	}
	replay(w, l.forward(r, body))
}
