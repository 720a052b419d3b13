package guestagent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// usbEvent reports a USB device's arrival or departure, and starts the
// smartcard reader's watcher for a CCID device.
func (a *agent) usbEvent(ev uevent) {
	e := ev.Env
	kv := []string{"action", ev.Action, "bus", e["BUSNUM"], "dev", e["DEVNUM"]}
	vid, pid := "", ""
	if p := strings.Split(e["PRODUCT"], "/"); len(p) >= 2 {
		vid, pid = pad4(p[0]), pad4(p[1])
	}
	kv = append(kv, "vid", vid, "pid", pid)
	sys := "/sys" + e["DEVPATH"]
	if ev.Action == "add" {
		kv = append(kv, "class", readTrim(sys+"/bDeviceClass"),
			"manufacturer", readTrim(sys+"/manufacturer"), "product", readTrim(sys+"/product"),
			"serial", readTrim(sys+"/serial"))
	}
	a.rep.Event(guestproto.TypeUSB, kv...)
}

// usbInterface starts the smartcard watcher on a CCID interface.
func (a *agent) usbInterface(ev uevent) {
	if ev.Action == "add" && isCCID(ev.Env["INTERFACE"]) {
		sys := "/sys" + ev.Env["DEVPATH"]
		if a.claim("ccid", sys) {
			go a.watchCCID(sys)
		}
	}
}

// scanCCID starts watchers on the readers present before the uevent
// listener (their uevents are gone).
func (a *agent) scanCCID() {
	for _, l := range sortedGlob("/sys/bus/usb/devices/*:*") {
		i, err := filepath.EvalSymlinks(l) // the uevent's path, for claim
		if err == nil && readTrim(i+"/bInterfaceClass") == "0b" && a.claim("ccid", i) {
			go a.watchCCID(i)
		}
	}
}

func pad4(s string) string {
	for len(s) < 4 {
		s = "0" + s
	}
	return s
}

// scanStorage reads the USB block devices present at boot (those that
// appear later come through uevents).
func (a *agent) scanStorage() {
	for _, b := range sortedGlob("/sys/block/*") {
		if n := filepath.Base(b); strings.HasPrefix(n, "sr") || strings.HasPrefix(n, "sd") {
			go a.readStorage(n)
		}
	}
}

// readStorage reports one medium (errors as error events). A read of
// the same device under way already reports it: this one is dropped.
func (a *agent) readStorage(name string) {
	l := a.storageLock(name)
	if !l.TryLock() {
		return
	}
	defer l.Unlock()
	if err := a.readStorageNow(name); err != nil {
		errorf(a.rep, "storage "+name, err)
	}
}

// usbOf walks up from a block device to its USB device: "vid:pid".
func usbOf(name string) (string, bool) {
	p, err := filepath.EvalSymlinks("/sys/block/" + name + "/device")
	if err != nil {
		return "", false
	}
	for ; p != "/" && p != "."; p = filepath.Dir(p) {
		if v := readTrim(p + "/idVendor"); v != "" {
			return v + ":" + readTrim(p+"/idProduct"), true
		}
	}
	return "", false
}

// mediumWait bounds how long a drive may report no medium or not ready
// after it appeared (a redirected CD spins up through usbredir).
const mediumWait = 15 * time.Second

// storageLock is name's read lock.
func (a *agent) storageLock(name string) *sync.Mutex {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.storage == nil {
		a.storage = map[string]*sync.Mutex{}
	}
	l := a.storage[name]
	if l == nil {
		l = &sync.Mutex{}
		a.storage[name] = l
	}
	return l
}

// readStorageCommand is the storage-read command: it waits for a read
// under way (the hotplug's own, whose event the caller may already have
// seen) and then reads the device again, so the command's ack always
// follows a storage event of its own.
func (a *agent) readStorageCommand(name string) error {
	l := a.storageLock(name)
	l.Lock()
	defer l.Unlock()
	return a.readStorageNow(name)
}

// readStorageNow reads a USB block device whole and reports its sha256
// (the caller holds its storageLock).
func (a *agent) readStorageNow(name string) error {
	usb, ok := usbOf(name)
	if !ok {
		return nil // not on USB (nothing of ours)
	}
	dev := "/dev/" + name
	var f *os.File
	var err error
	deadline := time.Now().Add(mediumWait)
	for {
		f, err = os.Open(dev)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOMEDIUM) && !errors.Is(err, unix.EIO) && !errors.Is(err, unix.ENXIO) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond) // no event says "medium ready" for a device that already announced itself
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read %s after %d bytes: %w", dev, n, err)
	}
	sysdev := "/sys/block/" + name + "/device"
	a.rep.Event(guestproto.TypeStorage, "dev", name, "usb", usb,
		"vendor", readTrim(sysdev+"/vendor"), "model", readTrim(sysdev+"/model"),
		"bytes", fmt.Sprint(n), "sha256", hex.EncodeToString(h.Sum(nil)))
	return nil
}
