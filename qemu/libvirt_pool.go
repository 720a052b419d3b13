package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/spiceharness/spiceharness/fixtures/guest"
)

// The guest image on a remote host (RemoteHost): a transient dir pool,
// one uploaded base volume per image content, one qcow2 overlay per VM.
//
// Volume names, all in the pool PoolName:
//
//	sh-img-HASH.FMT      the image, uploaded once (HASH: 16 hex digits of its SHA-256)
//	sh-img-HASH.ok       written after the upload finished: only then is the image trusted
//	sh-vm-NAME.qcow2     the overlay VM NAME boots; deleted by Close
//	sh-vm-NAME-img.FMT   a private upload, when another harness is uploading the same image
//
// Another harness process may be uploading the same image into the same
// pool: a base volume without its .ok marker is never used (its upload
// may be unfinished) and this VM uploads a private copy instead, so no
// one waits on anyone. Leftovers of harnesses that died (overlays of
// domains that no longer run, bases without a marker) older than
// staleVolumeAge are deleted the first time this process uses the pool.

// staleVolumeAge is how old a harness volume with no running domain (or
// an unmarked base) must be before the sweep deletes it: far longer than
// any boot, so a volume another harness is still setting up survives.
const staleVolumeAge = 30 * time.Minute

// uploads holds the uploads in flight in this process, so VMs booting
// on one host at once upload an image once; a finished upload is found
// by looking its volume up.
var uploads = struct {
	sync.Mutex
	m     map[string]*upload // by pool key + hash
	swept map[string]bool    // pool keys swept in this process
}{m: map[string]*upload{}, swept: map[string]bool{}}

type upload struct {
	done chan struct{}
	path string // the base volume's path on the host, once done
	err  error
}

// diskImage is the image a remote VM boots: its content hash, format,
// size and a way to read it.
type diskImage struct {
	hash   string // 16 hex digits of the SHA-256
	format string // raw or qcow2
	size   uint64
	open   func() (io.ReadCloser, error)
}

// imageCache remembers the hash of each Disk file by path, size and
// modification time, so booting many VMs from one big image hashes it
// once.
var imageCache sync.Map // string -> string

func (c *config) diskImage() (diskImage, error) {
	if c.disk == "" {
		img := guest.Image()
		sum := sha256.Sum256(img)
		return diskImage{hash: hex.EncodeToString(sum[:8]), format: "raw", size: uint64(len(img)),
			open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(img)), nil }}, nil
	}
	st, err := os.Stat(c.disk)
	if err != nil {
		return diskImage{}, fmt.Errorf("qemu: disk: %w", err)
	}
	key := c.disk + "\x00" + strconv.FormatInt(st.Size(), 10) + "\x00" + st.ModTime().String()
	h, ok := imageCache.Load(key)
	if !ok {
		f, err := os.Open(c.disk)
		if err != nil {
			return diskImage{}, fmt.Errorf("qemu: disk: %w", err)
		}
		sum := sha256.New()
		_, err = io.Copy(sum, f)
		f.Close()
		if err != nil {
			return diskImage{}, fmt.Errorf("qemu: disk %s: %w", c.disk, err)
		}
		h = hex.EncodeToString(sum.Sum(nil)[:8])
		imageCache.Store(key, h)
	}
	disk := c.disk
	return diskImage{hash: h.(string), format: diskFormat(disk), size: uint64(st.Size()),
		open: func() (io.ReadCloser, error) { return os.Open(disk) }}, nil
}

// stageDisk puts the VM's disk on its host: the pool, the image (uploaded
// unless a finished copy is there), and the VM's own overlay. It returns
// the overlay's path on the host.
func (d *Domain) stageDisk(ctx context.Context) (string, error) {
	c := d.cfg
	img, err := c.diskImage()
	if err != nil {
		return "", err
	}
	pool, err := d.ensurePool(ctx)
	if err != nil {
		return "", err
	}
	d.pool = pool
	d.sweepPool(ctx, pool)
	base, err := d.baseImage(ctx, pool, img)
	if err != nil {
		return "", err
	}
	name := "sh-vm-" + c.name + ".qcow2"
	vx := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Value: img.size, Unit: "bytes"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path: base, Format: &libvirtxml.StorageVolumeTargetFormat{Type: img.format},
		},
	}
	x, err := vx.Marshal()
	if err != nil {
		return "", fmt.Errorf("qemu: %s: overlay volume XML: %w", d, err)
	}
	vol, err := call(ctx, func() (libvirt.StorageVol, error) { return d.l.StorageVolCreateXML(pool, x, 0) })
	if err != nil {
		return "", fmt.Errorf("qemu: %s: create the overlay volume %s in pool %s: %w", d, name, PoolName, err)
	}
	d.overlay = &vol
	return call(ctx, func() (string, error) { return d.l.StorageVolGetPath(vol) })
}

// ensurePool finds the harness's pool on the host, or creates it: a
// transient dir pool (no libvirt config is left behind; the files stay,
// and the next run's pool sees them).
func (d *Domain) ensurePool(ctx context.Context) (libvirt.StoragePool, error) {
	dir := d.cfg.host.poolDir
	for attempt := 0; ; attempt++ {
		pool, err := call(ctx, func() (libvirt.StoragePool, error) { return d.l.StoragePoolLookupByName(PoolName) })
		if err == nil {
			return pool, d.checkPool(ctx, pool, dir)
		}
		if !isLibvirtErr(err, libvirt.ErrNoStoragePool) {
			return libvirt.StoragePool{}, fmt.Errorf("qemu: %s: look up storage pool %s: %w", d, PoolName, err)
		}
		px := &libvirtxml.StoragePool{
			Type: "dir", Name: PoolName,
			Target: &libvirtxml.StoragePoolTarget{Path: dir, Permissions: &libvirtxml.StoragePoolTargetPermissions{Mode: "0755"}},
		}
		x, err := px.Marshal()
		if err != nil {
			return libvirt.StoragePool{}, err
		}
		pool, err = call(ctx, func() (libvirt.StoragePool, error) {
			return d.l.StoragePoolCreateXML(x, libvirt.StoragePoolCreateWithBuild)
		})
		if err == nil {
			d.cfg.logger.Info("qemu: storage pool created", "host", d.cfg.host.name, "pool", PoolName, "dir", dir)
			return pool, nil
		}
		// Another VM of this or another harness created it meanwhile:
		// look it up again (once).
		if attempt == 0 && isLibvirtErr(err, libvirt.ErrOperationFailed, libvirt.ErrStorageVolExist, libvirt.ErrInternalError) {
			continue
		}
		return libvirt.StoragePool{}, fmt.Errorf("qemu: %s: create storage pool %s at %s: %w", d, PoolName, dir, err)
	}
}

// checkPool makes sure the existing pool is the directory asked for and
// running.
func (d *Domain) checkPool(ctx context.Context, pool libvirt.StoragePool, dir string) error {
	x, err := call(ctx, func() (string, error) { return d.l.StoragePoolGetXMLDesc(pool, 0) })
	if err != nil {
		return fmt.Errorf("qemu: %s: storage pool %s: %w", d, PoolName, err)
	}
	var px libvirtxml.StoragePool
	if err := px.Unmarshal(x); err != nil {
		return fmt.Errorf("qemu: %s: storage pool %s: %w", d, PoolName, err)
	}
	if px.Type != "dir" || px.Target == nil || px.Target.Path != dir {
		got := px.Type
		if px.Target != nil {
			got += " pool at " + px.Target.Path
		}
		return &ConfigError{Field: "RemoteHost", Value: dir, Reason: fmt.Sprintf(
			"host %s already has a storage pool named %s that is a %s, not a dir pool at %s: set the host's pool_dir to that directory, or remove the pool (virsh pool-destroy %s)",
			d.cfg.host.name, PoolName, got, dir, PoolName)}
	}
	state, _, _, _, err := d.l.StoragePoolGetInfo(pool)
	if err == nil && libvirt.StoragePoolState(state) != libvirt.StoragePoolRunning {
		if _, err := call(ctx, func() (struct{}, error) { return struct{}{}, d.l.StoragePoolCreate(pool, 0) }); err != nil {
			return fmt.Errorf("qemu: %s: start storage pool %s: %w", d, PoolName, err)
		}
	}
	return nil
}

// baseImage returns the path on the host of a finished upload of img:
// the cached one, one this process is uploading, or a new upload.
func (d *Domain) baseImage(ctx context.Context, pool libvirt.StoragePool, img diskImage) (string, error) {
	key := d.uri.String() + "\x00" + d.cfg.host.poolDir + "\x00" + img.hash
	for {
		uploads.Lock()
		u, inFlight := uploads.m[key]
		if !inFlight {
			u = &upload{done: make(chan struct{})}
			uploads.m[key] = u
		}
		uploads.Unlock()
		if inFlight {
			select {
			case <-u.done:
			case <-ctx.Done():
				return "", context.Cause(ctx)
			}
			if u.err == nil {
				return u.path, nil
			}
			continue // it failed: try ourselves
		}
		u.path, u.err = d.uploadBase(ctx, pool, img)
		uploads.Lock()
		// Only VMs waiting now share this result: later ones look the
		// volume up (the host may have lost it, or be another libvirtd
		// at the same address).
		delete(uploads.m, key)
		uploads.Unlock()
		close(u.done)
		return u.path, u.err
	}
}

// uploadBase finds the marked base volume of img, or uploads it. When
// another process is uploading it (an unmarked base), it uploads a
// private copy for this VM instead.
func (d *Domain) uploadBase(ctx context.Context, pool libvirt.StoragePool, img diskImage) (string, error) {
	name := "sh-img-" + img.hash + "." + img.format
	marker := "sh-img-" + img.hash + ".ok"
	base, err := call(ctx, func() (libvirt.StorageVol, error) { return d.l.StorageVolLookupByName(pool, name) })
	if err == nil {
		if _, merr := call(ctx, func() (libvirt.StorageVol, error) { return d.l.StorageVolLookupByName(pool, marker) }); merr == nil {
			d.cfg.logger.Info("qemu: guest image cached on the host", "host", d.cfg.host.name, "volume", name)
			return call(ctx, func() (string, error) { return d.l.StorageVolGetPath(base) })
		}
		// Unmarked: someone else's upload, unfinished or abandoned.
		return d.uploadPrivate(ctx, pool, img)
	}
	if !isLibvirtErr(err, libvirt.ErrNoStorageVol) {
		return "", fmt.Errorf("qemu: %s: look up volume %s: %w", d, name, err)
	}
	vol, err := d.createVolume(ctx, pool, name, img.format, img.size)
	if err != nil {
		if isLibvirtErr(err, libvirt.ErrStorageVolExist) {
			return d.uploadPrivate(ctx, pool, img) // another harness just started uploading it
		}
		return "", err
	}
	start := time.Now()
	if err := d.upload(ctx, vol, img); err != nil {
		d.l.StorageVolDelete(vol, 0)
		return "", err
	}
	if _, err := d.createVolume(ctx, pool, marker, "raw", 0); err != nil {
		return "", err
	}
	d.cfg.logger.Info("qemu: guest image uploaded to the host", "host", d.cfg.host.name, "volume", name,
		"bytes", img.size, "took", time.Since(start).Round(time.Millisecond))
	return call(ctx, func() (string, error) { return d.l.StorageVolGetPath(vol) })
}

// uploadPrivate uploads img as a volume of this VM alone, deleted with
// its overlay.
func (d *Domain) uploadPrivate(ctx context.Context, pool libvirt.StoragePool, img diskImage) (string, error) {
	name := "sh-vm-" + d.cfg.name + "-img." + img.format
	vol, err := d.createVolume(ctx, pool, name, img.format, img.size)
	if err != nil {
		return "", err
	}
	d.private = &vol
	if err := d.upload(ctx, vol, img); err != nil {
		return "", err
	}
	d.cfg.logger.Info("qemu: guest image uploaded for this VM alone (another harness is uploading the shared copy)", "host", d.cfg.host.name, "volume", name)
	return call(ctx, func() (string, error) { return d.l.StorageVolGetPath(vol) })
}

func (d *Domain) createVolume(ctx context.Context, pool libvirt.StoragePool, name, format string, size uint64) (libvirt.StorageVol, error) {
	vx := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Value: size, Unit: "bytes"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: format}},
	}
	x, err := vx.Marshal()
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	vol, err := call(ctx, func() (libvirt.StorageVol, error) { return d.l.StorageVolCreateXML(pool, x, 0) })
	if err != nil {
		return vol, fmt.Errorf("qemu: %s: create volume %s in pool %s: %w", d, name, PoolName, err)
	}
	return vol, nil
}

// upload streams img into vol (virStorageVolUpload).
func (d *Domain) upload(ctx context.Context, vol libvirt.StorageVol, img diskImage) error {
	r, err := img.open()
	if err != nil {
		return fmt.Errorf("qemu: disk: %w", err)
	}
	defer r.Close()
	_, err = call(ctx, func() (struct{}, error) { return struct{}{}, d.l.StorageVolUpload(vol, r, 0, img.size, 0) })
	if err != nil {
		return fmt.Errorf("qemu: %s: upload the guest image into volume %s: %w", d, vol.Name, err)
	}
	return nil
}

// deleteVolumes removes the VM's overlay and private image from the
// host (Close, once the domain is gone).
func (d *Domain) deleteVolumes() error {
	var errs []error
	for _, v := range []*libvirt.StorageVol{d.overlay, d.private} {
		if v == nil {
			continue
		}
		if err := d.l.StorageVolDelete(*v, 0); err != nil && !isLibvirtErr(err, libvirt.ErrNoStorageVol) {
			errs = append(errs, fmt.Errorf("qemu: %s: delete volume %s: %w", d, v.Name, err))
		}
	}
	d.overlay, d.private = nil, nil
	return errors.Join(errs...)
}

// sweepPool deletes, once per pool per process, the volumes harnesses
// that died left behind: VM volumes whose domain is not running and
// unmarked bases, older than staleVolumeAge. Best effort: a failure here
// only leaves files.
func (d *Domain) sweepPool(ctx context.Context, pool libvirt.StoragePool) {
	key := d.uri.String() + "\x00" + d.cfg.host.poolDir
	uploads.Lock()
	done := uploads.swept[key]
	uploads.swept[key] = true
	uploads.Unlock()
	if done {
		return
	}
	vols, _, err := d.l.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return
	}
	names := map[string]bool{}
	for _, v := range vols {
		names[v.Name] = true
	}
	for _, v := range vols {
		stale := false
		switch {
		case strings.HasPrefix(v.Name, "sh-vm-"):
			dom := strings.TrimPrefix(v.Name, "sh-vm-")
			if strings.HasSuffix(dom, "-img.raw") || strings.HasSuffix(dom, "-img.qcow2") {
				dom = dom[:strings.LastIndex(dom, "-img.")]
			} else {
				dom = strings.TrimSuffix(dom, ".qcow2")
			}
			if _, err := d.l.DomainLookupByName(dom); isLibvirtErr(err, libvirt.ErrNoDomain) {
				stale = true
			}
		case strings.HasPrefix(v.Name, "sh-img-") && !strings.HasSuffix(v.Name, ".ok"):
			stem, _, _ := strings.Cut(v.Name, ".")
			stale = !names[stem+".ok"]
		}
		if !stale || ctx.Err() != nil || volumeAge(d.l, v) < staleVolumeAge {
			continue
		}
		if err := d.l.StorageVolDelete(v, 0); err == nil {
			d.cfg.logger.Info("qemu: removed a stale volume", "host", d.cfg.host.name, "volume", v.Name)
		}
	}
}

// volumeAge is how long ago vol was last modified (0 when unknown).
func volumeAge(l *libvirt.Libvirt, vol libvirt.StorageVol) time.Duration {
	x, err := l.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return 0
	}
	var vx libvirtxml.StorageVolume
	if vx.Unmarshal(x) != nil || vx.Target == nil || vx.Target.Timestamps == nil {
		return 0
	}
	sec, _, _ := strings.Cut(vx.Target.Timestamps.Mtime, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0
	}
	return time.Since(time.Unix(s, 0))
}

// isLibvirtErr reports whether err is a libvirt error with one of codes.
func isLibvirtErr(err error, codes ...libvirt.ErrorNumber) bool {
	var le libvirt.Error
	if !errors.As(err, &le) {
		return false
	}
	for _, c := range codes {
		if le.Code == uint32(c) {
			return true
		}
	}
	return false
}
