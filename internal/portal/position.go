package portal

import (
	"fmt"
	"math"
	"strconv"

	"github.com/vula-eid/vula/internal/signing"
)

// The visible signature's size and its distance from the page's edges, in points.
const (
	boxW, boxH = 210.0, 54.0
	margin     = 36.0
)

// Placements offered as radio buttons; PlacePoint is a click on the preview.
const (
	PlaceBottomLeft   = "bottom-left"
	PlaceBottomCenter = "bottom-center"
	PlaceBottomRight  = "bottom-right"
	PlaceTopLeft      = "top-left"
	PlaceTopRight     = "top-right"
	PlacePoint        = "point"
)

// Placements is the radio buttons' order.
var Placements = []string{PlaceBottomLeft, PlaceBottomCenter, PlaceBottomRight, PlaceTopLeft, PlaceTopRight}

// Position is where the visible signature goes in every document of a session.
type Position struct {
	Page  string `json:"page"`  // "first", "last" or a page number
	Place string `json:"place"` // one of Placements, or PlacePoint
	// X and Y are, for PlacePoint, the box's centre as fractions (0 to 1) of the page as it is
	// shown (rotation applied), from its top-left corner: so a click on one document's
	// preview places the box alike on pages of another size.
	X float64 `json:"x,omitempty"`
	Y float64 `json:"y,omitempty"`
}

// Check refuses a position that names no placement or a bad page.
func (p Position) Check() error {
	switch p.Page {
	case "first", "last":
	default:
		if n, err := strconv.Atoi(p.Page); err != nil || n < 1 || n > 1_000_000 {
			return fmt.Errorf("%w: page %q (want first, last or a number)", signing.ErrInvalid, p.Page)
		}
	}
	switch p.Place {
	case PlaceBottomLeft, PlaceBottomCenter, PlaceBottomRight, PlaceTopLeft, PlaceTopRight:
	case PlacePoint:
		if !(p.X >= 0 && p.X <= 1 && p.Y >= 0 && p.Y <= 1) {
			return fmt.Errorf("%w: a point outside the page", signing.ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: placement %q", signing.ErrInvalid, p.Place)
	}
	return nil
}

// PageIn is the 1-based page of a document of info the position names; an error when the
// document has fewer pages.
func (p Position) PageIn(info Info) (int, Box, error) {
	switch p.Page {
	case "first":
		return 1, info.First, nil
	case "last":
		return info.Pages, info.Last, nil
	}
	n, err := strconv.Atoi(p.Page)
	if err != nil || n < 1 {
		return 0, Box{}, fmt.Errorf("%w: page %q", signing.ErrInvalid, p.Page)
	}
	if n > info.Pages {
		return 0, Box{}, fmt.Errorf("%w: page %d of a document of %d pages", signing.ErrInvalid, n, info.Pages)
	}
	switch n {
	case 1:
		return n, info.First, nil
	case info.Pages:
		return n, info.Last, nil
	}
	return n, info.First, nil
}

// ClickPoint turns a click at pixel (x, y) on a preview of w×h pixels into a PlacePoint
// position's fractions.
func ClickPoint(x, y, w, h int) (float64, float64, error) {
	if w <= 0 || h <= 0 || x < 0 || y < 0 || x > w || y > h {
		return 0, 0, fmt.Errorf("%w: a click at %d,%d outside the %d×%d preview", signing.ErrInvalid, x, y, w, h)
	}
	return float64(x) / float64(w), float64(y) / float64(h), nil
}

// Rect is the signature's rectangle (llx lly urx ury, in the page's default user space) on a
// page with box b: a corner or the bottom centre at the margin, or centred on the point,
// kept inside the page. The rectangle is boxW×boxH in user space, where its text is drawn;
// on a rotated page it therefore shows turned with the page.
func (p Position) Rect(b Box) [4]float64 {
	// Work in the shown page's coordinates: origin top-left, x right, y down, in points.
	uw, uh := b.Rect[2]-b.Rect[0], b.Rect[3]-b.Rect[1]
	w, h := math.Min(boxW, uw-2), math.Min(boxH, uh-2) // the box in user space
	pw, ph, sw, sh := uw, uh, w, h                     // the page and the box as shown
	if b.Rotate == 90 || b.Rotate == 270 {
		pw, ph, sw, sh = uh, uw, h, w
	}
	var cx, cy float64 // the box's centre
	switch p.Place {
	case PlaceBottomLeft:
		cx, cy = margin+sw/2, ph-margin-sh/2
	case PlaceBottomCenter:
		cx, cy = pw/2, ph-margin-sh/2
	case PlaceBottomRight:
		cx, cy = pw-margin-sw/2, ph-margin-sh/2
	case PlaceTopLeft:
		cx, cy = margin+sw/2, margin+sh/2
	case PlaceTopRight:
		cx, cy = pw-margin-sw/2, margin+sh/2
	default: // PlacePoint
		cx, cy = p.X*pw, p.Y*ph
	}
	cx = math.Max(sw/2+1, math.Min(cx, pw-sw/2-1))
	cy = math.Max(sh/2+1, math.Min(cy, ph-sh/2-1))
	// Two corners in shown coordinates, mapped to user space.
	x0, y0 := toUser(b, cx-sw/2, cy-sh/2, pw, ph)
	x1, y1 := toUser(b, cx+sw/2, cy+sh/2, pw, ph)
	return [4]float64{round2(math.Min(x0, x1)), round2(math.Min(y0, y1)), round2(math.Max(x0, x1)), round2(math.Max(y0, y1))}
}

// toUser maps a point of the shown page (top-left origin, y down, pw×ph) to user space: the
// viewer turns the page clockwise by /Rotate, so this turns it back.
func toUser(b Box, sx, sy, pw, ph float64) (float64, float64) {
	llx, lly := b.Rect[0], b.Rect[1]
	switch b.Rotate {
	case 90:
		return llx + sy, lly + sx
	case 180:
		return llx + pw - sx, lly + sy
	case 270:
		return llx + ph - sy, lly + pw - sx
	}
	return llx + sx, lly + ph - sy
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
