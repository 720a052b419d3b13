package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// kernelPkg is the versioned package linux-image-amd64 depends on.
type kernelPkg struct {
	Name    string // linux-image-6.1.0-57-amd64
	Version string // 6.1.192-3
}

var dependsRE = regexp.MustCompile(`^(linux-image-[0-9][^ ]*) \(= ([^)]+)\)`)

// resolveKernel asks apt (local package lists, no network) which kernel
// linux-image-amd64 stands for today. Without package lists it falls
// back to the newest kernel already in the cache.
func resolveKernel(ctx context.Context, dir string) (kernelPkg, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", KernelPackage).Output()
	if err == nil {
		if k, ok := parseDepends(out); ok {
			return k, nil
		}
	}
	if k, ok := newestCachedKernel(dir); ok {
		return k, nil
	}
	return kernelPkg{}, fmt.Errorf("guestimage: apt-cache knows no %s (%v) and %s holds no kernel yet: run `apt-get update` on this Debian machine", KernelPackage, errText(err), dir)
}

// parseDepends reads `apt-cache show linux-image-amd64` for the
// versioned kernel package it depends on.
func parseDepends(show []byte) (kernelPkg, bool) {
	sc := bufio.NewScanner(bytes.NewReader(show))
	for sc.Scan() {
		deps, ok := strings.CutPrefix(sc.Text(), "Depends: ")
		if !ok {
			continue
		}
		for _, d := range strings.Split(deps, ",") {
			if m := dependsRE.FindStringSubmatch(strings.TrimSpace(d)); m != nil {
				return kernelPkg{Name: m[1], Version: m[2]}, true
			}
		}
	}
	return kernelPkg{}, false
}

func newestCachedKernel(dir string) (kernelPkg, bool) {
	ms, _ := filepath.Glob(filepath.Join(dir, "kernel-*", "package"))
	var best kernelPkg
	var bestTime int64
	for _, m := range ms {
		b, err := os.ReadFile(m)
		fi, serr := os.Stat(m)
		name, ver, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
		if err != nil || serr != nil || !ok {
			continue
		}
		if t := fi.ModTime().UnixNano(); t > bestTime {
			best, bestTime = kernelPkg{name, ver}, t
		}
	}
	return best, bestTime != 0
}

func errText(err error) string {
	if err == nil {
		return "no versioned dependency"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return err.Error()
}

// kernelDir is one kernel version's extracted pieces.
type kernelDir struct {
	Dir     string // kernel-VERSION-HASH
	Pkg     kernelPkg
	Release string   // uname -r
	Vmlinux string   // path
	Modules []string // paths relative to lib/modules/RELEASE, load-order irrelevant
}

// modSetHash names a kernel dir by the module lists it was cut for.
func modSetHash() string {
	h := sha256.Sum256([]byte(strings.Join(bootModules, ",") + ";" + strings.Join(lateModules, ",") + fmt.Sprintf(";strip=%v", StripSignatures)))
	return hex.EncodeToString(h[:])[:8]
}

// ensureKernel returns the extracted kernel for k, downloading and
// extracting the .deb when this version was never extracted.
func ensureKernel(ctx context.Context, o Options, dir string, k kernelPkg) (kernelDir, error) {
	kd := kernelDir{Dir: filepath.Join(dir, "kernel-"+sanitize(k.Version)+"-"+modSetHash()), Pkg: k}
	if done, err := os.ReadFile(filepath.Join(kd.Dir, "release")); err == nil {
		kd.Release = strings.TrimSpace(string(done))
		kd.Vmlinux = filepath.Join(kd.Dir, "vmlinux")
		mods, err := listModules(filepath.Join(kd.Dir, "lib", "modules", kd.Release))
		kd.Modules = mods
		return kd, err
	}
	deb, err := download(ctx, o, dir, k)
	if err != nil {
		return kd, err
	}
	tmp, err := os.MkdirTemp(dir, "tmp-extract-")
	if err != nil {
		return kd, err
	}
	defer os.RemoveAll(tmp)
	o.logf("extracting %s", filepath.Base(deb))
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return kd, fmt.Errorf("guestimage: dpkg-deb -x %s: %v: %s", deb, err, out)
	}
	release, err := findRelease(tmp)
	if err != nil {
		return kd, err
	}
	os.RemoveAll(kd.Dir)
	staging := kd.Dir + ".new"
	os.RemoveAll(staging)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return kd, err
	}
	o.logf("uncompressing the kernel of %s", release)
	if err := extractVmlinux(ctx, filepath.Join(tmp, "boot", "vmlinuz-"+release), filepath.Join(staging, "vmlinux")); err != nil {
		return kd, err
	}
	src := filepath.Join(tmp, "lib", "modules", release)
	dst := filepath.Join(staging, "lib", "modules", release)
	mods, err := cutModules(src, dst)
	if err != nil {
		return kd, err
	}
	if err := os.WriteFile(filepath.Join(staging, "package"), []byte(k.Name+" "+k.Version+"\n"), 0o644); err != nil {
		return kd, err
	}
	// release is written last: its presence marks a complete dir.
	if err := os.WriteFile(filepath.Join(staging, "release"), []byte(release+"\n"), 0o644); err != nil {
		return kd, err
	}
	if err := os.Rename(staging, kd.Dir); err != nil {
		return kd, err
	}
	kd.Release, kd.Vmlinux, kd.Modules = release, filepath.Join(kd.Dir, "vmlinux"), mods
	return kd, nil
}

// download fetches the kernel .deb into dir/debs unless it is there.
func download(ctx context.Context, o Options, dir string, k kernelPkg) (string, error) {
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	if have := findDeb(debs, k); have != "" {
		return have, nil
	}
	o.logf("apt-get download %s=%s", k.Name, k.Version)
	cmd := exec.CommandContext(ctx, "apt-get", "download", k.Name+"="+k.Version)
	cmd.Dir = debs
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("guestimage: apt-get download %s=%s: %v: %s (is this a Debian machine with its package lists? `apt-get update`)", k.Name, k.Version, err, bytes.TrimSpace(out))
	}
	if have := findDeb(debs, k); have != "" {
		return have, nil
	}
	return "", fmt.Errorf("guestimage: apt-get download %s=%s left no .deb in %s", k.Name, k.Version, debs)
}

// findDeb finds NAME_VERSION_*.deb (apt writes an epoch's colon as %3a).
func findDeb(dir string, k kernelPkg) string {
	v := strings.ReplaceAll(k.Version, ":", "%3a")
	ms, _ := filepath.Glob(filepath.Join(dir, k.Name+"_"+v+"_*.deb"))
	if len(ms) == 0 {
		return ""
	}
	sort.Strings(ms)
	return ms[0]
}

func findRelease(root string) (string, error) {
	ms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(ms) != 1 {
		return "", fmt.Errorf("guestimage: want one boot/vmlinuz-* in the kernel package, found %d", len(ms))
	}
	return strings.TrimPrefix(filepath.Base(ms[0]), "vmlinuz-"), nil
}

var unsafeRE = regexp.MustCompile(`[^A-Za-z0-9._+-]`)

func sanitize(s string) string { return unsafeRE.ReplaceAllString(s, "_") }
