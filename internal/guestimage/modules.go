package guestimage

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// bootModules are the drivers the agent loads before it reports ready:
// virtio-serial ports, the qxl (and std VGA's bochs) display, HDA audio
// with qemu's codec (driven by the generic codec parser), the xHCI and
// EHCI controllers, and input (evdev, USB HID for the tablet, PS/2
// mouse). The names are module names; their dependencies come along.
var bootModules = []string{
	"virtio_pci", "virtio_console",
	"qxl", "bochs",
	"snd_hda_intel", "snd_hda_codec_generic",
	"xhci_pci", "ehci_pci",
	"evdev", "usbhid", "hid_generic", "psmouse",
}

// lateModules are loaded after the ready line: what only a device
// plugged in later (a redirected USB stick or CD) needs.
var lateModules = []string{"usb_storage", "uas", "sr_mod", "sd_mod", "isofs"}

// kernelArgs are the guest's kernel parameters. Each one was measured to
// cut boot time under TCG or to keep the console quiet (see
// docs/linux-guest.md for the figures):
var kernelArgs = []string{
	"console=ttyS0",
	"quiet",                          // only errors on the console, which carries the events
	"cryptomgr.notests",              // no crypto self-tests at boot
	"mitigations=off",                // no speculation workarounds to patch in
	"no_timer_check", "tsc=reliable", // no timer and TSC checks that TCG fails slowly
	"pci=noaer", "audit=0", // nothing to report to
	"i8042.nopnp",                      // no PnP probing of the PS/2 controller
	"psmouse.proto=imps",               // no probing of a dozen mouse protocols: qemu's PS/2 mouse is an IntelliMouse
	"drm_kms_helper.fbdev_emulation=0", // no fbdev and no fbcon: the agent draws with DRM
	"qxl.num_heads=1",                  // one CRTC per qxl device: one device is one head
	"panic=-1",                         // a panic ends qemu instead of hanging the test
}

// modinfo is what a module's .modinfo section says about it.
type modinfo struct {
	Name    string
	Depends []string // module names
	Pre     []string // softdep pre:
}

func readModinfo(path string) (modinfo, error) {
	f, err := elf.Open(path)
	if err != nil {
		return modinfo{}, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return modinfo{}, fmt.Errorf("%s: no .modinfo section", path)
	}
	b, err := s.Data()
	if err != nil {
		return modinfo{}, err
	}
	return parseModinfo(b), nil
}

func parseModinfo(b []byte) modinfo {
	var m modinfo
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					m.Depends = append(m.Depends, d)
				}
			}
		case "softdep":
			// "pre: a b post: c"
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						m.Pre = append(m.Pre, w)
					}
				}
			}
		}
	}
	return m
}

// modName is the module name of a .ko file name (dashes become
// underscores, as the kernel does).
func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
}

// indexModules maps module names to .ko paths relative to root.
func indexModules(root string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(root, p)
			idx[modName(p)] = rel
		}
		return nil
	})
	return idx, err
}

// closure returns every module wanted needs (wanted included), with
// each one's direct dependencies (depends and softdep pre that exist),
// as paths relative to root.
func closure(root string, idx map[string]string, wanted []string) (map[string][]string, error) {
	return closureWith(idx, wanted, func(rel string) (modinfo, error) { return readModinfo(filepath.Join(root, rel)) })
}

// closureWith is closure with the .modinfo reader given (tests fake it).
func closureWith(idx map[string]string, wanted []string, info func(rel string) (modinfo, error)) (map[string][]string, error) {
	deps := map[string][]string{}
	todo := slices.Clone(wanted)
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		rel, ok := idx[name]
		if !ok {
			return nil, fmt.Errorf("guestimage: module %s is not in the kernel package (built in, or renamed?)", name)
		}
		if _, done := deps[rel]; done {
			continue
		}
		mi, err := info(rel)
		if err != nil {
			return nil, fmt.Errorf("guestimage: %w", err)
		}
		var ds []string
		for _, d := range mi.Depends {
			d = strings.ReplaceAll(d, "-", "_") // depends= may spell names either way
			r, ok := idx[d]
			if !ok {
				return nil, fmt.Errorf("guestimage: %s depends on %s, which the package lacks", name, d)
			}
			ds = append(ds, r)
			todo = append(todo, d)
		}
		for _, d := range mi.Pre {
			if r, ok := idx[strings.ReplaceAll(d, "-", "_")]; ok { // a soft dependency may be built in
				ds = append(ds, r)
				todo = append(todo, modName(r))
			}
		}
		deps[rel] = ds
	}
	return deps, nil
}

// modulesDep writes depmod's format: "path: dep dep", sorted.
func modulesDep(deps map[string][]string) []byte {
	var b bytes.Buffer
	keys := make([]string, 0, len(deps))
	for k := range deps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k + ":")
		for _, d := range deps[k] {
			b.WriteString(" " + d)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// cutModules copies the closure of bootModules and lateModules from src
// (an extracted lib/modules/RELEASE) to dst with a modules.dep for it
// and the package's modules.builtin, and returns the copied paths.
func cutModules(src, dst string) ([]string, error) {
	idx, err := indexModules(src)
	if err != nil {
		return nil, fmt.Errorf("guestimage: %w", err)
	}
	deps, err := closure(src, idx, append(slices.Clone(bootModules), lateModules...))
	if err != nil {
		return nil, err
	}
	var mods []string
	for rel := range deps {
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			return nil, err
		}
		if StripSignatures {
			b = stripSignature(b)
		}
		if err := os.WriteFile(filepath.Join(dst, rel), b, 0o644); err != nil {
			return nil, err
		}
		mods = append(mods, rel)
	}
	sort.Strings(mods)
	if err := os.WriteFile(filepath.Join(dst, "modules.dep"), modulesDep(deps), 0o644); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(src, "modules.builtin")); err == nil {
		if err := os.WriteFile(filepath.Join(dst, "modules.builtin"), b, 0o644); err != nil {
			return nil, err
		}
	}
	return mods, nil
}

// listModules lists the .ko files under a cut module tree.
func listModules(root string) ([]string, error) {
	idx, err := indexModules(root)
	if err != nil {
		return nil, fmt.Errorf("guestimage: %w", err)
	}
	var out []string
	for _, rel := range idx {
		out = append(out, rel)
	}
	sort.Strings(out)
	return out, nil
}

// StripSignatures drops each module's appended signature. The kernel
// (CONFIG_MODULE_SIG without MODULE_SIG_FORCE, no lockdown) then loads
// it unverified, tainted, instead of checking an RSA signature per
// module, which under TCG costs tens of milliseconds each. A variable
// so the boot figures can be measured both ways.
var StripSignatures = true

// sigMarker ends a signed module: data, signature, struct
// module_signature (12 bytes, sig_len big-endian in its last 4), marker.
const sigMarker = "~Module signature appended~\n"

func stripSignature(b []byte) []byte {
	if !bytes.HasSuffix(b, []byte(sigMarker)) {
		return b
	}
	end := len(b) - len(sigMarker)
	if end < 12 {
		return b
	}
	info := b[end-12 : end]
	sigLen := int(info[8])<<24 | int(info[9])<<16 | int(info[10])<<8 | int(info[11])
	if sigLen > end-12 {
		return b
	}
	return b[:end-12-sigLen]
}
