package guestproto

import (
	"image"
	"image/color"
)

// Picture is what the agent draws on a head for CmdDraw: eight vertical
// bars of saturated colours, rotated by the head number so two heads
// never show the same picture, and a white square in the top-left corner
// one eighth of the height wide (a second one, on head 1, in the
// top-right). Every pixel is one of nine colours with components 0, 128
// or 255, so a screenshot compares exactly.
func Picture(head, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	sq := h / 8
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetRGBA(x, y, PictureAt(head, w, h, x, y, sq))
		}
	}
	return img
}

// PictureAt is the colour of one pixel of Picture (sq is h/8).
func PictureAt(head, w, h, x, y, sq int) color.RGBA {
	white := color.RGBA{255, 255, 255, 255}
	if y < sq && x < sq {
		return white
	}
	if head == 1 && y < sq && x >= w-sq {
		return white
	}
	return bars[(x*8/w+head)%len(bars)]
}

var bars = [8]color.RGBA{
	{0, 0, 0, 255}, {255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255},
	{255, 255, 0, 255}, {0, 255, 255, 255}, {255, 0, 255, 255}, {128, 128, 128, 255},
}

// PatternBytes returns n deterministic bytes for seed (xorshift64*), the
// payload of CmdPortWrite and CmdClipboardSet when they are given len and
// seed, so both ends can compute it.
func PatternBytes(seed uint64, n int) []byte {
	x := seed*0x9E3779B97F4A7C15 + 1
	out := make([]byte, n)
	for i := range out {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		out[i] = byte((x * 0x2545F4914F6CDD1D) >> 56)
	}
	return out
}

// AnimationNoise is the noise CmdAnimate's frames are cut from: n
// bytes of PatternBytes(7, n). Noise, so that each frame's JPEG is large
// (a frame of 512x384 is over 64 KiB).
func AnimationNoise(n int) []byte { return PatternBytes(7, n) }
