package harness

import (
	"fmt"
	"path/filepath"
	"strings"
)

// ClientOption adds one of spice-gtk's own options (the --spice-… flags
// remote-viewer and spicy share) to a real client's command line:
// ShareCD, ShareDir, SoftSmartcard. None carries a secret.
type ClientOption func(*clientArgs) error

type clientArgs struct{ flags []string }

// spiceCDFilter redirects the client's emulated CD as soon as the
// session is up: spice-gtk creates the CD device before any usbredir
// channel exists, and its auto-redirect filter only acts on devices
// plugged in later, so without a redirect-on-connect filter the CD stays
// on the client. USB class 0x08 is mass storage; the filter format is
// class,vendor,product,version,allow.
const spiceCDFilter = "0x08,-1,-1,-1,1"

// ShareCD shares an ISO image as an emulated USB CD drive
// (--spice-share-cd) and redirects it to the guest over a usbredir
// channel when the session opens. The VM needs usbredir channels
// (qemu.USBRedirChannels).
func ShareCD(iso string) ClientOption {
	return func(a *clientArgs) error {
		if err := cleanPath("ShareCD", iso); err != nil {
			return err
		}
		a.flags = append(a.flags, "--spice-share-cd="+iso, "--spice-usbredir-redirect-on-connect="+spiceCDFilter)
		return nil
	}
}

// ShareDir shares a directory over the WebDAV channel
// (--spice-shared-dir). remote-viewer 11 connects that channel only once
// a user ticks Preferences → "Share folder" (virt-viewer's share-folder
// setting starts false and has no command-line or .vv key), so use it
// with StartSpicy, which connects every port channel, WebDAV included.
func ShareDir(dir string) ClientOption {
	return func(a *clientArgs) error {
		if err := cleanPath("ShareDir", dir); err != nil {
			return err
		}
		a.flags = append(a.flags, "--spice-shared-dir="+dir)
		return nil
	}
}

// SoftSmartcard gives the client a software smartcard (libcacard's CAC
// emulation) made of three certificates, by nickname, from the NSS
// database in dir (--spice-smartcard, --spice-smartcard-db,
// --spice-smartcard-certificates). The card is in its virtual reader
// from the start, so the guest's CCID reader sees it inserted when the
// smartcard channel opens. The VM needs qemu.SmartcardChannel.
func SoftSmartcard(db string, certs ...string) ClientOption {
	return func(a *clientArgs) error {
		if err := cleanPath("SoftSmartcard", db); err != nil {
			return err
		}
		if len(certs) != 3 {
			return fmt.Errorf("harness: SoftSmartcard: libcacard's software card takes exactly 3 certificates, got %d", len(certs))
		}
		for _, c := range certs {
			if c == "" || strings.ContainsAny(c, ",\n") {
				return fmt.Errorf("harness: SoftSmartcard: certificate nickname %q: want a non-empty name without commas", c)
			}
		}
		a.flags = append(a.flags, "--spice-smartcard", "--spice-smartcard-db="+db, "--spice-smartcard-certificates="+strings.Join(certs, ","))
		return nil
	}
}

func cleanPath(opt, p string) error {
	if !filepath.IsAbs(p) || strings.ContainsAny(p, "\n") {
		return fmt.Errorf("harness: %s: want an absolute path, got %q", opt, p)
	}
	return nil
}

func clientFlags(opts []ClientOption) ([]string, error) {
	var a clientArgs
	for _, o := range opts {
		if err := o(&a); err != nil {
			return nil, err
		}
	}
	return a.flags, nil
}
