// Regenerates tar-golden.json: the exact bytes (less the 1 KiB trailer) Go's archive/tar writes for tarcases.json, with
// headers built as containerd's ChangeWriter builds them. Run: go run gen-tar-golden.go
package main

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"time"
)

type tcase struct {
	Name     string            `json:"name"`
	Format   string            `json:"format"`
	Typeflag string            `json:"typeflag"`
	HName    string            `json:"hname"`
	Linkname string            `json:"linkname"`
	Size     int64             `json:"size"`
	Mode     int64             `json:"mode"`
	UID      int               `json:"uid"`
	GID      int               `json:"gid"`
	Mtime    int64             `json:"mtime"`
	Devmajor int64             `json:"devmajor"`
	Devminor int64             `json:"devminor"`
	Pax      map[string]string `json:"pax"`
	Data     string            `json:"data"`
}

func b64(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func main() {
	raw, err := os.ReadFile("tarcases.json")
	if err != nil {
		panic(err)
	}
	var cases []tcase
	if err := json.Unmarshal(raw, &cases); err != nil {
		panic(err)
	}
	out := map[string]string{}
	for _, c := range cases {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		hdr := &tar.Header{
			Typeflag: c.Typeflag[0],
			Name:     b64(c.HName),
			Linkname: b64(c.Linkname),
			Size:     c.Size,
			Mode:     c.Mode,
			Uid:      c.UID,
			Gid:      c.GID,
			ModTime:  time.Unix(c.Mtime, 0),
			Devmajor: c.Devmajor,
			Devminor: c.Devminor,
		}
		if c.Format == "pax" {
			hdr.Format = tar.FormatPAX
		} else {
			hdr.AccessTime = time.Unix(0, 0)
			hdr.ChangeTime = time.Unix(0, 0)
		}
		if len(c.Pax) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range c.Pax {
				hdr.PAXRecords[k] = b64(v)
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(c.Name + ": " + err.Error())
		}
		if c.Data != "" {
			if _, err := tw.Write([]byte(b64(c.Data))); err != nil {
				panic(err)
			}
		}
		if err := tw.Close(); err != nil {
			panic(err)
		}
		// The 1 KiB trailer is the same for every case; leave it out of the file.
		b := buf.Bytes()
		if !bytes.Equal(b[len(b)-1024:], make([]byte, 1024)) {
			panic("unexpected trailer")
		}
		out[c.Name] = base64.StdEncoding.EncodeToString(b[:len(b)-1024])
	}
	j, _ := json.MarshalIndent(out, "", " ")
	if err := os.WriteFile("tar-golden.json", append(j, '\n'), 0o644); err != nil {
		panic(err)
	}
}
