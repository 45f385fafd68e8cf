package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// binaryEvent turns one structured-mode CloudEvent (what the cloudevents
// encoder writes) into the binary content mode of the HTTP binding: each
// attribute in a ce-<name> header, datacontenttype as Content-Type, and
// data (or data_base64, decoded) as the body.
func binaryEvent(structured []byte) (*bytes.Buffer, http.Header, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(structured, &fields); err != nil {
		return nil, nil, fmt.Errorf("sending a CloudEvent in binary mode: the record is not a structured CloudEvent: %w", err)
	}
	hdr := http.Header{}
	body := new(bytes.Buffer)
	for name, raw := range fields {
		switch name {
		case "data":
			body.Write(raw)
			continue
		case "data_base64":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, nil, fmt.Errorf("sending a CloudEvent in binary mode: data_base64: %w", err)
			}
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, nil, fmt.Errorf("sending a CloudEvent in binary mode: data_base64: %w", err)
			}
			body.Write(b)
			continue
		}
		if bytes.Equal(raw, []byte("null")) {
			continue // an attribute without a value is absent
		}
		var value string
		if len(raw) > 0 && raw[0] == '"' {
			if err := json.Unmarshal(raw, &value); err != nil {
				return nil, nil, fmt.Errorf("sending a CloudEvent in binary mode: attribute %s: %w", name, err)
			}
		} else {
			value = string(raw) // an extension's number or boolean, as its JSON text
		}
		if name == "datacontenttype" {
			hdr["Content-Type"] = []string{value}
			continue
		}
		if !validAttributeName(name) {
			return nil, nil, fmt.Errorf("sending a CloudEvent in binary mode: %q is not a CloudEvents attribute name (a-z, 0-9)", name)
		}
		hdr.Set("ce-"+name, percentEncode(value)) // header names are case-insensitive
	}
	if hdr.Get("ce-specversion") == "" {
		return nil, nil, errors.New("sending a CloudEvent in binary mode: the record has no specversion")
	}
	if _, ok := hdr["Content-Type"]; !ok && body.Len() > 0 {
		hdr["Content-Type"] = []string{ContentTypeJSON} // the spec's default for JSON data
	}
	return body, hdr, nil
}

func validAttributeName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// percentEncode encodes a header value as the CloudEvents HTTP binding
// asks: space, double quote, percent and every byte outside printable
// ASCII (each byte of a UTF-8 character) as %XX.
func percentEncode(s string) string {
	n := 0
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' || c == '"' || c == '%' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, len(s)+2*n)
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' || c == '"' || c == '%' {
			out = append(out, '%', hex[c>>4], hex[c&15])
			continue
		}
		out = append(out, c)
	}
	return string(out)
}
