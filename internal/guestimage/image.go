package guestimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BuilderVersion is part of every image key: bump it when the builder
// changes what it puts in an image (modules, kernel parameters, layout).
const BuilderVersion = "1"

// EnvDir overrides the cache directory.
const EnvDir = "HARNESS_GUEST_DIR"

// KernelPackage is the Debian package whose kernel the guest boots.
const KernelPackage = "linux-image-amd64"

// ErrNoImage: no image was built yet (Find); build one with `make guest`.
var ErrNoImage = errors.New("guestimage: no Linux guest image built")

// Image is a built guest: what qemu needs to boot it and where it came
// from. It is stored as manifest.json next to the initramfs.
type Image struct {
	// Kernel is the uncompressed vmlinux (ELF with a PVH note).
	Kernel string `json:"kernel"`
	// Initrd is the uncompressed newc initramfs.
	Initrd string `json:"initrd"`
	// Append lists the kernel parameters, one per element.
	Append []string `json:"append"`

	Key            string    `json:"key"`
	KernelPackage  string    `json:"kernel_package"`  // linux-image-6.1.0-57-amd64
	KernelVersion  string    `json:"kernel_version"`  // 6.1.192-3 (the package version)
	KernelRelease  string    `json:"kernel_release"`  // 6.1.0-57-amd64 (uname -r)
	AgentSHA256    string    `json:"agent_sha256"`    // of /init
	Modules        []string  `json:"modules"`         // every module in the image
	KernelBytes    int64     `json:"kernel_bytes"`    // size of Kernel
	InitrdBytes    int64     `json:"initrd_bytes"`    // size of Initrd
	BuilderVersion string    `json:"builder_version"` // BuilderVersion when built
	Built          time.Time `json:"built"`
}

// Options configures Ensure. The zero value builds into DefaultDir.
type Options struct {
	// Dir is the cache directory ("" = DefaultDir()).
	Dir string
	// Logf receives progress lines (nil = silent).
	Logf func(format string, args ...any)
}

// DefaultDir is HARNESS_GUEST_DIR, else $XDG_CACHE_HOME/spice-harness/guest,
// else ~/.cache/spice-harness/guest.
func DefaultDir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "spice-harness", "guest")
	}
	return filepath.Join(os.TempDir(), "spice-harness-guest")
}

func (o Options) dir() string {
	if o.Dir != "" {
		return o.Dir
	}
	return DefaultDir()
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

const currentName = "current.json"

// Find returns the image Ensure last built or found in dir ("" =
// DefaultDir()) without building anything. Its error wraps ErrNoImage
// and says how to build one when there is none.
func Find(dir string) (Image, error) {
	if dir == "" {
		dir = DefaultDir()
	}
	img, err := readManifest(filepath.Join(dir, currentName))
	if errors.Is(err, os.ErrNotExist) {
		return Image{}, fmt.Errorf("%w in %s: run `make guest` (or `go run ./cmd/harness guest build`) in the spice-harness module, or set %s", ErrNoImage, dir, EnvDir)
	}
	if err != nil {
		return Image{}, err
	}
	for _, f := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return Image{}, fmt.Errorf("%w: %s lists %s, which is gone (%v): run `make guest` again", ErrNoImage, filepath.Join(dir, currentName), f, err)
		}
	}
	return img, nil
}

// Ensure returns the image for the current kernel package and agent
// source, building what is missing. Concurrent calls (several test
// binaries) serialise on a lock file in the cache directory.
func Ensure(ctx context.Context, o Options) (Image, error) {
	dir := o.dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Image{}, fmt.Errorf("guestimage: cache dir: %w", err)
	}
	unlock, err := lock(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return Image{}, err
	}
	defer unlock()

	kpkg, err := resolveKernel(ctx, dir)
	if err != nil {
		return Image{}, err
	}
	tmp, err := os.MkdirTemp(dir, "tmp-")
	if err != nil {
		return Image{}, fmt.Errorf("guestimage: %w", err)
	}
	defer os.RemoveAll(tmp)
	agent, err := buildAgent(ctx, tmp)
	if err != nil {
		return Image{}, err
	}
	key := imageKey(kpkg, agent.sum)
	imgDir := filepath.Join(dir, "image-"+key)
	if img, err := readManifest(filepath.Join(imgDir, "manifest.json")); err == nil {
		o.logf("guest image %s is up to date (%s %s)", key, kpkg.Name, kpkg.Version)
		now := time.Now()
		os.Chtimes(imgDir, now, now) // in use: the newest for prune
		return img, writeCurrent(dir, img)
	}
	o.logf("building guest image %s (%s %s, agent %s)", key, kpkg.Name, kpkg.Version, agent.sum[:12])
	k, err := ensureKernel(ctx, o, dir, kpkg)
	if err != nil {
		return Image{}, err
	}
	img, err := buildImage(imgDir, tmp, k, agent)
	if err != nil {
		return Image{}, err
	}
	img.Key = key
	if err := writeManifest(filepath.Join(imgDir, "manifest.json"), img); err != nil {
		return Image{}, err
	}
	o.logf("guest image %s: kernel %d bytes, initramfs %d bytes", key, img.KernelBytes, img.InitrdBytes)
	if err := writeCurrent(dir, img); err != nil {
		return img, err
	}
	prune(dir, imgDir, k.Dir)
	return img, nil
}

// imageKey hashes everything an image depends on.
func imageKey(k kernelPkg, agentSum string) string {
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\nkernel %s %s\nagent %s\nappend %s\nmodules %s\n",
		BuilderVersion, k.Name, k.Version, agentSum, strings.Join(kernelArgs, " "), modSetHash())
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func readManifest(path string) (Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Image{}, err
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return Image{}, fmt.Errorf("guestimage: %s: %w", path, err)
	}
	return img, nil
}

func writeManifest(path string, img Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'))
}

func writeCurrent(dir string, img Image) error {
	return writeManifest(filepath.Join(dir, currentName), img)
}

// writeAtomic writes via a temporary file and a rename, so a reader
// never sees half a file.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

// lock takes an exclusive flock on path, polling so ctx can end the
// wait (a build by another test binary takes up to a minute).
func lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("guestimage: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("guestimage: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("guestimage: waiting for another build's lock on %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond): // flock has no wait with a deadline
		}
	}
}
