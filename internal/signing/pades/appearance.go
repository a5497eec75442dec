package pades

import (
	"bytes"
	"compress/zlib"
	"crypto/x509"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"time"

	"golang.org/x/image/font/sfnt"

	"github.com/vula-eid/vula/internal/signing"
)

// checkAppearance checks a visible signature's page and rectangle.
func (d *document) checkAppearance(a *Appearance) (int, error) {
	n, err := d.pageCount()
	if err != nil {
		return 0, err
	}
	if a.Page < 1 || a.Page > n {
		return 0, fmt.Errorf("%w: pades: page %d for the signature; the document has %d", signing.ErrInvalid, a.Page, n)
	}
	r := a.Rect
	if !(r[2] > r[0] && r[3] > r[1]) {
		return 0, fmt.Errorf("%w: pades: the signature's rectangle %v is empty (want llx lly urx ury)", signing.ErrInvalid, r)
	}
	if len(a.Image) > 0 {
		if _, _, err := image.DecodeConfig(bytes.NewReader(a.Image)); err != nil {
			return 0, fmt.Errorf("%w: pades: the signature's image is not a PNG or JPEG: %v", signing.ErrInvalid, err)
		}
	}
	return a.Page, nil
}

// appearanceLines is the text of a visible signature: the caller's, or signer, date and reason.
func appearanceLines(a *Appearance, cert *x509.Certificate, opts Options, when time.Time) []string {
	if a.Text != "" {
		return strings.Split(normalText(a.Text), "\n")
	}
	who := cert.Subject.CommonName
	if opts.Name != "" {
		who = opts.Name
	}
	lines := []string{"Signed by: " + who, "Date: " + when.Format("2006-01-02 15:04:05 -07:00")}
	if opts.Reason != "" {
		lines = append(lines, "Reason: "+opts.Reason)
	}
	for i, l := range lines {
		lines[i] = normalText(l)
	}
	return lines
}

// appearance writes the widget's normal appearance: a form XObject with the image at the
// left and the lines of text in the embedded DejaVu Sans (font.go). Invisible
// signatures get an empty one.
func (u *update) appearance(f sigField) (ref, error) {
	w, h := f.rect[2]-f.rect[0], f.rect[3]-f.rect[1]
	form := dict{"Type": name("XObject"), "Subtype": name("Form"), "BBox": array{0, 0, w, h}}
	var content bytes.Buffer
	res := dict{}
	if w > 0 && h > 0 {
		textX := 2.0
		if len(f.image) > 0 {
			img, err := u.image(f.image)
			if err != nil {
				return ref{}, err
			}
			// Fit the image in the left part, at most half the width, keeping its aspect.
			iw, ih := img.w, img.h
			scale := min(h/ih, (w/2)/iw)
			dw, dh := iw*scale, ih*scale
			fmt.Fprintf(&content, "q %s 0 0 %s 0 %s cm /Im1 Do Q\n", formatReal(dw), formatReal(dh), formatReal((h-dh)/2))
			res["XObject"] = dict{"Im1": img.ref}
			textX = dw + 4
		}
		if len(f.lines) > 0 {
			tf, err := loadFont()
			if err != nil {
				return ref{}, err
			}
			used := map[sfnt.GlyphIndex]rune{}
			shown := make([]pdfStr, len(f.lines))
			longest := 1
			for i, l := range f.lines {
				var wl int
				if shown[i], wl, err = tf.encode(l, used); err != nil {
					return ref{}, err
				}
				longest = max(longest, wl)
			}
			font, err := tf.objects(u, used)
			if err != nil {
				return ref{}, err
			}
			res["Font"] = dict{"F1": font}
			// A line and a fifth per line; the longest line (in thousandths of an em) fits.
			size := min((h-4)/(1.2*float64(len(f.lines))), (w-textX-2)/(float64(longest)/1000), 24)
			size = max(size, 1)
			content.WriteString("BT\n")
			fmt.Fprintf(&content, "/F1 %s Tf %s TL %s %s Td\n", formatReal(size), formatReal(size*1.2), formatReal(textX), formatReal(h-2-size))
			for i, s := range shown {
				if i > 0 {
					content.WriteString("T* ")
				}
				writeObj(&content, s)
				content.WriteString(" Tj\n")
			}
			content.WriteString("ET\n")
		}
	}
	form["Resources"] = res
	r := u.alloc()
	u.putStream(r, stream{d: form, data: content.Bytes()})
	return r, nil
}

type imageObj struct {
	ref  ref
	w, h float64
}

// image writes a JPEG as it is (DCTDecode) or a PNG decoded to RGB with its alpha as a soft
// mask, both compressed.
func (u *update) image(data []byte) (imageObj, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return imageObj{}, fmt.Errorf("%w: pades: the signature's image: %v", signing.ErrInvalid, err)
	}
	r := u.alloc()
	out := imageObj{ref: r, w: float64(cfg.Width), h: float64(cfg.Height)}
	base := dict{"Type": name("XObject"), "Subtype": name("Image"), "Width": cfg.Width, "Height": cfg.Height, "BitsPerComponent": 8}
	switch format {
	case "jpeg":
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil { // a JPEG that cannot be shown is refused now
			return imageObj{}, fmt.Errorf("%w: pades: the signature's image: %v", signing.ErrInvalid, err)
		}
		cs := name("DeviceRGB")
		switch cfg.ColorModel {
		case color.GrayModel:
			cs = "DeviceGray"
		case color.CMYKModel:
			cs = "DeviceCMYK"
			base["Decode"] = array{1, 0, 1, 0, 1, 0, 1, 0} // Adobe's inverted CMYK JPEGs
		}
		base["ColorSpace"], base["Filter"] = cs, name("DCTDecode")
		u.putStream(r, stream{d: base, data: data})
	case "png":
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return imageObj{}, fmt.Errorf("%w: pades: the signature's image: %v", signing.ErrInvalid, err)
		}
		b := img.Bounds()
		rgb := make([]byte, 0, 3*b.Dx()*b.Dy())
		alpha := make([]byte, 0, b.Dx()*b.Dy())
		opaque := true
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				rgb = append(rgb, c.R, c.G, c.B)
				alpha = append(alpha, c.A)
				opaque = opaque && c.A == 255
			}
		}
		if !opaque {
			mask := u.alloc()
			md := dict{"Type": name("XObject"), "Subtype": name("Image"), "Width": cfg.Width, "Height": cfg.Height,
				"BitsPerComponent": 8, "ColorSpace": name("DeviceGray"), "Filter": name("FlateDecode")}
			u.putStream(mask, stream{d: md, data: deflate(alpha)})
			base["SMask"] = mask
		}
		base["ColorSpace"], base["Filter"] = name("DeviceRGB"), name("FlateDecode")
		u.putStream(r, stream{d: base, data: deflate(rgb)})
	default:
		return imageObj{}, fmt.Errorf("%w: pades: the signature's image is %s, want PNG or JPEG", signing.ErrInvalid, format)
	}
	return out, nil
}

func deflate(b []byte) []byte {
	var out bytes.Buffer
	z := zlib.NewWriter(&out)
	// Into a bytes.Buffer, which does not fail.
	_, _ = z.Write(b)
	_ = z.Close()
	return out.Bytes()
}
