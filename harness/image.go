package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"strconv"
)

// Image is an 8-bit RGB picture, as spicy-screenshot writes it (P6 PPM).
type Image struct {
	W, H int
	Pix  []byte // RGB, row-major, 3 bytes per pixel
}

// ErrPPM: not a binary 8-bit PPM.
var ErrPPM = errors.New("harness: not a P6 PPM with maxval 255")

// DecodePPM reads a binary (P6) PPM with maxval 255.
func DecodePPM(data []byte) (*Image, error) {
	r := bufio.NewReader(bytes.NewReader(data))
	var fields [4]string
	for i := range fields {
		tok, err := ppmToken(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrPPM, err)
		}
		fields[i] = tok
	}
	w, err1 := strconv.Atoi(fields[1])
	h, err2 := strconv.Atoi(fields[2])
	if fields[0] != "P6" || fields[3] != "255" || err1 != nil || err2 != nil || w <= 0 || h <= 0 || w > 1<<14 || h > 1<<14 {
		return nil, fmt.Errorf("%w: header %q", ErrPPM, fields)
	}
	pix := make([]byte, 3*w*h)
	if _, err := io.ReadFull(r, pix); err != nil {
		return nil, fmt.Errorf("%w: %dx%d pixels: %v", ErrPPM, w, h, err)
	}
	return &Image{W: w, H: h, Pix: pix}, nil
}

// ppmToken reads one header token, skipping whitespace and comments, and
// consumes the single whitespace byte after it.
func ppmToken(r *bufio.Reader) (string, error) {
	var tok []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		switch {
		case b == '#' && len(tok) == 0:
			if _, err := r.ReadString('\n'); err != nil {
				return "", err
			}
		case b == ' ' || b == '\t' || b == '\n' || b == '\r':
			if len(tok) > 0 {
				return string(tok), nil
			}
		default:
			tok = append(tok, b)
		}
	}
}

// DecodePNG reads a PNG (a browser's screenshot) as RGB, dropping alpha.
func DecodePNG(data []byte) (*Image, error) {
	m, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("harness: not a PNG: %w", err)
	}
	b := m.Bounds()
	img := &Image{W: b.Dx(), H: b.Dy(), Pix: make([]byte, 0, 3*b.Dx()*b.Dy())}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			img.Pix = append(img.Pix, c.R, c.G, c.B)
		}
	}
	return img, nil
}

// EncodePPM writes img as a P6 PPM.
func (img *Image) EncodePPM() []byte {
	b := fmt.Appendf(nil, "P6\n%d %d\n255\n", img.W, img.H)
	return append(b, img.Pix...)
}

// Crop returns the w×h rectangle at (x, y).
func (img *Image) Crop(x, y, w, h int) (*Image, error) {
	if x < 0 || y < 0 || w <= 0 || h <= 0 || x+w > img.W || y+h > img.H {
		return nil, fmt.Errorf("harness: crop %dx%d+%d+%d outside a %dx%d image", w, h, x, y, img.W, img.H)
	}
	out := &Image{W: w, H: h, Pix: make([]byte, 0, 3*w*h)}
	for row := y; row < y+h; row++ {
		out.Pix = append(out.Pix, img.Pix[3*(row*img.W+x):3*(row*img.W+x+w)]...)
	}
	return out, nil
}

// DiffPixels counts pixels that differ (compare -metric AE). Images of
// different sizes differ in every pixel of the larger one.
func (img *Image) DiffPixels(o *Image) int {
	if img.W != o.W || img.H != o.H {
		return max(img.W*img.H, o.W*o.H)
	}
	n := 0
	for i := 0; i < len(img.Pix); i += 3 {
		if img.Pix[i] != o.Pix[i] || img.Pix[i+1] != o.Pix[i+1] || img.Pix[i+2] != o.Pix[i+2] {
			n++
		}
	}
	return n
}

// Blank reports whether every pixel has the same colour.
func (img *Image) Blank() bool {
	for i := 3; i < len(img.Pix); i += 3 {
		if img.Pix[i] != img.Pix[0] || img.Pix[i+1] != img.Pix[1] || img.Pix[i+2] != img.Pix[2] {
			return false
		}
	}
	return true
}
