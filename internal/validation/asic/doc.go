// Package asic validates ASiC-E containers (EN 319 162-1): XAdES signature files through
// xmlsig, CAdES signatures over an ASiCManifest through cades, and which data entries each
// signature covers. See asic.go for the rules.
package asic
