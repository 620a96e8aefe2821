// Export for the vCenter simulator: VirtualMachine.ExportVm and
// OvfManager.CreateDescriptor, which Debian's govmomi simulator lacks.
//
// This file is compiled INTO the simulator package (imagebuilder.vcsim.build
// copies Debian's govmomi simulator sources into a private GOPATH entry and
// adds it), so it reaches the package's own HttpNfcLease, its file map and the
// NFC handler that serves /nfc/<lease>/<file>. The build also routes that
// handler's GET branch to serveNFCGet below (the Debian version's GET branch
// copies into a nil writer).
//
// The simulator keeps no disk contents, so each exported disk is a
// streamOptimized VMDK, laid out as vSphere streams one (grains with markers,
// then grain tables, grain directory, footer and end-of-stream marker), of the
// VM disk's capacity: one grain holding a text label, the rest unallocated.
package simulator

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ExportFailHalfway makes every NFC GET send half of its file and then break
// the connection, as a network failure in the middle of an export would.
var ExportFailHalfway bool

var exportFiles struct {
	sync.Mutex
	dir string
}

// RemoveExportFiles deletes the disks generated for exports; call it at exit.
func RemoveExportFiles() {
	exportFiles.Lock()
	defer exportFiles.Unlock()
	if exportFiles.dir != "" {
		os.RemoveAll(exportFiles.dir)
		exportFiles.dir = ""
	}
}

// exportDir is a fresh directory for one lease's files.
func exportDir() (string, error) {
	exportFiles.Lock()
	defer exportFiles.Unlock()
	if exportFiles.dir == "" {
		dir, err := os.MkdirTemp("", "vcsim-export-")
		if err != nil {
			return "", err
		}
		exportFiles.dir = dir
	}
	return os.MkdirTemp(exportFiles.dir, "lease-")
}

// exportDeviceID names a disk in an export lease's device URLs and, through
// Packer's OvfFile.DeviceId, in CreateDescriptor.
func exportDeviceID(vm *VirtualMachine, disk *types.VirtualDisk) string {
	return fmt.Sprintf("/%s/VirtualDisk:%d", vm.Self.Value, disk.Key)
}

func exportDisks(vm *VirtualMachine) []*types.VirtualDisk {
	var disks []*types.VirtualDisk
	for _, d := range vm.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			disks = append(disks, disk)
		}
	}
	return disks
}

// ExportVm hands out an HttpNfcLease whose device URLs serve the VM's disks.
func (vm *VirtualMachine) ExportVm(ctx *Context, req *types.ExportVm) soap.HasFault {
	body := new(methods.ExportVmBody)
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		body.Fault_ = Fault("the VM must be powered off to export it", &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOff,
			ExistingState:  vm.Runtime.PowerState,
		})
		return body
	}
	dir, err := exportDir()
	if err != nil {
		body.Fault_ = Fault(err.Error(), &types.FileFault{File: os.TempDir()})
		return body
	}

	lease := NewHttpNfcLease(ctx, vm.Self)
	ref := lease.Reference()
	lease.Info.Lease = ref
	for n, disk := range exportDisks(vm) {
		name := fmt.Sprintf("disk-%d.vmdk", n)
		file := filepath.Join(dir, name)
		label := fmt.Sprintf("vcsim export of %s, disk %d (%s)\n", vm.Name, n, exportDeviceID(vm, disk))
		size, err := writeStreamOptimized(file, getDiskSize(disk), []byte(label))
		if err != nil {
			ctx.Session.Remove(ref) // as HttpNfcLeaseAbort does
			nfcLease.Delete(ref)
			body.Fault_ = Fault(err.Error(), &types.FileFault{File: file})
			return body
		}
		lease.files[name] = file
		lease.Info.TotalDiskCapacityInKB += getDiskSize(disk) / 1024
		lease.Info.DeviceUrl = append(lease.Info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:      exportDeviceID(vm, disk),
			Url:      (&url.URL{Scheme: "https", Host: "*", Path: nfcPrefix + path.Join(ref.Value, name)}).String(),
			Disk:     types.NewBool(true),
			TargetId: name,
			FileSize: size,
		})
	}
	log.Printf("export %s: lease %s, %d disk(s)", vm.Name, ref.Value, len(lease.Info.DeviceUrl))
	body.Res = &types.ExportVmResponse{Returnval: ref}
	return body
}

// serveNFCGet sends an NFC lease's file with its length, so a client can tell
// a complete transfer from a broken one.
func serveNFCGet(w http.ResponseWriter, r *http.Request, f *os.File) {
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(info.Size()))
	w.WriteHeader(http.StatusOK)
	if ExportFailHalfway {
		n, _ := io.CopyN(w, f, info.Size()/2)
		if flusher, ok := w.(http.Flusher); ok {
			flusher.Flush()
		}
		log.Printf("nfc GET %s: broke the connection after %d of %d bytes (-fail-export-get)", f.Name(), n, info.Size())
		panic(http.ErrAbortHandler) // closes the connection without completing the response
	}
	n, err := io.Copy(w, f)
	msg := fmt.Sprintf("sent %d bytes", n)
	if err != nil {
		msg = err.Error()
	}
	log.Printf("nfc GET %s: %s", f.Name(), msg)
}

// The streamOptimized layout (VMware Virtual Disk Format 5.0, "Stream-Optimized
// Compressed Sparse Extents"); offsets and sizes in 512-byte sectors.
const (
	sectorSize     = 512
	grainSectors   = 128 // 64 KiB grains
	gtesPerGT      = 512
	streamOverhead = 128 // grains start at 64 KiB, as VMware writes streams
	markerEOS      = 0
	markerGT       = 1
	markerGD       = 2
	markerFooter   = 3
	flagNewline    = 1 << 0
	flagCompressed = 1 << 16
	flagMarkers    = 1 << 17
	gdAtEnd        = ^uint64(0)
)

type sparseHeader struct {
	Magic             [4]byte
	Version           uint32
	Flags             uint32
	Capacity          uint64
	GrainSize         uint64
	DescriptorOffset  uint64
	DescriptorSize    uint64
	NumGTEsPerGT      uint32
	RgdOffset         uint64
	GdOffset          uint64
	Overhead          uint64
	UncleanShutdown   uint8
	LineChars         [4]byte
	CompressAlgorithm uint16
	Pad               [433]byte
}

type sectorWriter struct {
	w   *bufio.Writer
	pos uint64 // sectors written
}

// write writes data padded with zeros to whole sectors; returns its first sector.
func (s *sectorWriter) write(data []byte) (uint64, error) {
	start := s.pos
	if _, err := s.w.Write(data); err != nil {
		return 0, err
	}
	if pad := (sectorSize - len(data)%sectorSize) % sectorSize; pad > 0 {
		if _, err := s.w.Write(make([]byte, pad)); err != nil {
			return 0, err
		}
	}
	s.pos += uint64((len(data) + sectorSize - 1) / sectorSize)
	return start, nil
}

func (s *sectorWriter) metadata(kind uint32, data []byte) (uint64, error) {
	marker := make([]byte, sectorSize)
	binary.LittleEndian.PutUint64(marker[0:], uint64((len(data)+sectorSize-1)/sectorSize))
	binary.LittleEndian.PutUint32(marker[12:], kind)
	if _, err := s.write(marker); err != nil {
		return 0, err
	}
	return s.write(data)
}

func headerBytes(h *sparseHeader) []byte {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, h)
	return buf.Bytes()
}

// writeStreamOptimized writes a streamOptimized VMDK of capacity bytes whose
// first grain starts with data (the rest reads as zeros); returns its size.
func writeStreamOptimized(file string, capacity int64, data []byte) (int64, error) {
	sectors := uint64(capacity+sectorSize-1) / sectorSize
	if sectors == 0 {
		return 0, fmt.Errorf("cannot export a disk of %d bytes", capacity)
	}
	grains := (sectors + grainSectors - 1) / grainSectors
	tables := (grains + gtesPerGT - 1) / gtesPerGT

	name := filepath.Base(file)
	cid := sha1.Sum([]byte(file))
	descriptor := fmt.Sprintf(`# Disk DescriptorFile
version=1
CID=%x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "%s"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.longContentID = "%x"
ddb.virtualHWVersion = "4"
`, cid[:4], sectors, name, min64(sectors/(255*63), 65535), cid[:16])
	descSectors := uint64((len(descriptor) + sectorSize - 1) / sectorSize)

	header := sparseHeader{
		Magic: [4]byte{'K', 'D', 'M', 'V'}, Version: 3,
		Flags:    flagNewline | flagCompressed | flagMarkers,
		Capacity: sectors, GrainSize: grainSectors,
		DescriptorOffset: 1, DescriptorSize: descSectors,
		NumGTEsPerGT: gtesPerGT, GdOffset: gdAtEnd, Overhead: streamOverhead,
		LineChars: [4]byte{'\n', ' ', '\r', '\n'}, CompressAlgorithm: 1,
	}

	out, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	s := &sectorWriter{w: bufio.NewWriter(out)}
	steps := []func() error{
		func() error { _, err := s.write(headerBytes(&header)); return err },
		func() error { _, err := s.write([]byte(descriptor)); return err },
		func() error { _, err := s.write(make([]byte, (streamOverhead-s.pos)*sectorSize)); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return 0, err
		}
	}

	// Grain 0: the label, zero-filled to the grain (or the disk, if smaller).
	grain := make([]byte, min64(grainSectors, sectors)*sectorSize)
	copy(grain, data)
	var packed bytes.Buffer
	zw := zlib.NewWriter(&packed)
	if _, err := zw.Write(grain); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	record := make([]byte, 12, 12+packed.Len())
	binary.LittleEndian.PutUint64(record[0:], 0) // the grain's first sector on the disk
	binary.LittleEndian.PutUint32(record[8:], uint32(packed.Len()))
	grainAt, err := s.write(append(record, packed.Bytes()...))
	if err != nil {
		return 0, err
	}

	// Only the first grain table has an entry; the others are left out (a zero
	// grain directory entry: nothing allocated there).
	gt := make([]byte, gtesPerGT*4)
	binary.LittleEndian.PutUint32(gt[0:], uint32(grainAt))
	gtAt, err := s.metadata(markerGT, gt)
	if err != nil {
		return 0, err
	}
	gd := make([]byte, tables*4)
	binary.LittleEndian.PutUint32(gd[0:], uint32(gtAt))
	gdAt, err := s.metadata(markerGD, gd)
	if err != nil {
		return 0, err
	}
	footer := header
	footer.GdOffset = gdAt
	if _, err := s.metadata(markerFooter, headerBytes(&footer)); err != nil {
		return 0, err
	}
	if _, err := s.write(make([]byte, sectorSize)); err != nil { // end of stream
		return 0, err
	}
	if err := s.w.Flush(); err != nil {
		return 0, err
	}
	if err := out.Close(); err != nil {
		return 0, err
	}
	return int64(s.pos * sectorSize), nil
}

func min64(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

// CreateDescriptor writes an OVF descriptor of a VM for the files an export
// downloaded (cdp.OvfFiles, matched to disks by the lease's device ids).
func (m *OvfManager) CreateDescriptor(ctx *Context, req *types.CreateDescriptor) soap.HasFault {
	body := new(methods.CreateDescriptorBody)
	vm, ok := ctx.Map.Get(req.Obj).(*VirtualMachine)
	if !ok {
		body.Fault_ = Fault("only VMs can be described", &types.InvalidArgument{InvalidProperty: "obj"})
		return body
	}
	name := req.Cdp.Name
	if name == "" {
		name = vm.Name
	}
	files := make(map[string]types.OvfFile)
	for _, f := range req.Cdp.OvfFiles {
		files[f.DeviceId] = f
	}
	var desc string
	ctx.Map.WithLock(vm, func() { desc = ovfDescriptor(ctx, vm, name, files) })
	body.Res = &types.CreateDescriptorResponse{Returnval: types.OvfCreateDescriptorResult{OvfDescriptor: desc}}
	return body
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// ovfOSIDs are the CIM operating system ids of the guest ids our OS files use.
var ovfOSIDs = map[string]int{
	"ubuntu64Guest": 94, "rhel8_64Guest": 80, "rhel9_64Guest": 80, "centos8_64Guest": 107,
	"vmwarePhoton64Guest": 36, "other4xLinux64Guest": 101, "other5xLinux64Guest": 101,
}

var controllerSubtypes = map[string]string{
	"pvscsi": "VirtualSCSI", "lsilogic": "lsilogic", "lsilogic-sas": "lsilogicsas", "buslogic": "buslogic",
}

func ethernetSubtype(card types.BaseVirtualDevice) string {
	switch card.(type) {
	case *types.VirtualVmxnet3:
		return "VmxNet3"
	case *types.VirtualE1000e:
		return "E1000e"
	case *types.VirtualE1000:
		return "E1000"
	case *types.VirtualPCNet32:
		return "PCNet32"
	}
	return "VmxNet3"
}

func networkName(ctx *Context, card types.BaseVirtualEthernetCard) string {
	switch b := card.GetVirtualEthernetCard().Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		return b.DeviceName
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		ref := types.ManagedObjectReference{Type: "DistributedVirtualPortgroup", Value: b.Port.PortgroupKey}
		if pg, ok := ctx.Map.Get(ref).(*DistributedVirtualPortgroup); ok {
			return pg.Name
		}
		return b.Port.PortgroupKey
	}
	return ""
}

func ovfDescriptor(ctx *Context, vm *VirtualMachine, name string, files map[string]types.OvfFile) string {
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	var refs, disks, items, networks bytes.Buffer
	instance := 0
	item := func(fields map[string]string, extra string) int {
		instance++
		fields["rasd:InstanceID"] = fmt.Sprint(instance)
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys) // CIM orders an item's elements by name
		fmt.Fprintf(&items, "      <Item>\n")
		for _, k := range keys {
			fmt.Fprintf(&items, "        <%s>%s</%s>\n", k, xmlText(fields[k]), k)
		}
		items.WriteString(extra)
		fmt.Fprintf(&items, "      </Item>\n")
		return instance
	}

	item(map[string]string{
		"rasd:AllocationUnits": "hertz * 10^6", "rasd:Description": "Number of Virtual CPUs",
		"rasd:ElementName":  fmt.Sprintf("%d virtual CPU(s)", vm.Config.Hardware.NumCPU),
		"rasd:ResourceType": "3", "rasd:VirtualQuantity": fmt.Sprint(vm.Config.Hardware.NumCPU),
	}, fmt.Sprintf("        <vmw:CoresPerSocket ovf:required=\"false\">%d</vmw:CoresPerSocket>\n",
		vm.Config.Hardware.NumCoresPerSocket))
	item(map[string]string{
		"rasd:AllocationUnits": "byte * 2^20", "rasd:Description": "Memory Size",
		"rasd:ElementName":  fmt.Sprintf("%dMB of memory", vm.Config.Hardware.MemoryMB),
		"rasd:ResourceType": "4", "rasd:VirtualQuantity": fmt.Sprint(vm.Config.Hardware.MemoryMB),
	}, "")

	parents := make(map[int32]int)
	for _, d := range devices {
		c, ok := d.(types.BaseVirtualSCSIController)
		if !ok {
			continue
		}
		bus := c.GetVirtualSCSIController().BusNumber
		kind := devices.Type(d)
		parents[d.GetVirtualDevice().Key] = item(map[string]string{
			"rasd:Address": fmt.Sprint(bus), "rasd:Description": "SCSI Controller",
			"rasd:ElementName": fmt.Sprintf("SCSI controller %d", bus), "rasd:ResourceSubType": controllerSubtypes[kind],
			"rasd:ResourceType": "6",
		}, "")
	}

	for n, disk := range exportDisks(vm) {
		diskID := fmt.Sprintf("vmdisk%d", n+1)
		fileRef := ""
		if f, ok := files[exportDeviceID(vm, disk)]; ok {
			fileID := fmt.Sprintf("file%d", n+1)
			fmt.Fprintf(&refs, "    <File ovf:href=\"%s\" ovf:id=\"%s\" ovf:size=\"%d\"/>\n", xmlText(f.Path), fileID, f.Size)
			fileRef = fmt.Sprintf(" ovf:fileRef=\"%s\"", fileID)
		}
		fmt.Fprintf(&disks, "    <Disk ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"%s\"%s "+
			"ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\" ovf:populatedSize=\"%d\"/>\n",
			getDiskSize(disk), diskID, fileRef, grainSectors*sectorSize)
		fields := map[string]string{
			"rasd:AddressOnParent": "0", "rasd:ElementName": fmt.Sprintf("Hard disk %d", n+1),
			"rasd:HostResource": "ovf:/disk/" + diskID, "rasd:ResourceType": "17",
		}
		if disk.UnitNumber != nil {
			fields["rasd:AddressOnParent"] = fmt.Sprint(*disk.UnitNumber)
		}
		if parent, ok := parents[disk.ControllerKey]; ok {
			fields["rasd:Parent"] = fmt.Sprint(parent)
		}
		item(fields, "")
	}

	seen := make(map[string]bool)
	for n, card := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		net := networkName(ctx, card.(types.BaseVirtualEthernetCard))
		subtype := ethernetSubtype(card)
		unit := int32(7 + n)
		if u := card.GetVirtualDevice().UnitNumber; u != nil {
			unit = *u
		}
		item(map[string]string{
			"rasd:AddressOnParent": fmt.Sprint(unit), "rasd:AutomaticAllocation": "true", "rasd:Connection": net,
			"rasd:Description": subtype + " ethernet adapter on \"" + net + "\"", "rasd:ElementName": fmt.Sprintf("Network adapter %d", n+1),
			"rasd:ResourceSubType": subtype, "rasd:ResourceType": "10",
		}, "")
		if !seen[net] {
			seen[net] = true
			fmt.Fprintf(&networks, "    <Network ovf:name=\"%s\">\n      <Description>The %s network</Description>\n    </Network>\n",
				xmlText(net), xmlText(net))
		}
	}

	osID, ok := ovfOSIDs[vm.Config.GuestId]
	if !ok {
		osID = 1 // CIM "Other"
	}
	firmware := ""
	if vm.Config.Firmware != "" {
		firmware = fmt.Sprintf("      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"%s\"/>\n", xmlText(vm.Config.Firmware))
	}
	annotation := ""
	if vm.Config.Annotation != "" {
		annotation = fmt.Sprintf("    <AnnotationSection>\n      <Info>A human-readable annotation</Info>\n      <Annotation>%s</Annotation>\n    </AnnotationSection>\n",
			xmlText(vm.Config.Annotation))
	}
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="vcsim" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
%s  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
%s  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
%s  </NetworkSection>
  <VirtualSystem ovf:id="%s">
    <Info>A virtual machine</Info>
    <Name>%s</Name>
    <OperatingSystemSection ovf:id="%d" vmw:osType="%s">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>%s</vssd:VirtualSystemType>
      </System>
%s%s    </VirtualHardwareSection>
%s  </VirtualSystem>
</Envelope>
`, refs.String(), disks.String(), networks.String(), xmlText(name), xmlText(name), osID,
		xmlText(vm.Config.GuestId), xmlText(name), xmlText(vm.Config.Version), items.String(), firmware, annotation)
}
