// otlp-sink: the fast local OTLP/HTTP trace receiver of scripts/bench.sh. It
// accepts protobuf ExportTraceServiceRequests on POST /v1/traces (plain or
// gzip), counts their spans by walking the wire format without decoding
// anything else, keeps nothing, and answers 200 with an empty
// ExportTraceServiceResponse. GET /count returns the spans counted so far;
// GET /stats also the requests and bytes. Standard library only, so Debian's
// Go 1.19 builds it in GOPATH mode:
//
//	GO111MODULE=off go build -o /tmp/otlp-sink ./scripts/otlp-sink
//	/tmp/otlp-sink -listen 127.0.0.1:0 -port-file /tmp/sink.port
package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Field numbers of the OTLP trace protos (opentelemetry/proto/collector/trace/v1 and trace/v1).
const (
	requestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	resourceScopeSpans   = 2 // ResourceSpans.scope_spans
	scopeSpans           = 2 // ScopeSpans.spans
)

var (
	spans, requests, rejected, bodyBytes atomic.Int64
	buffers                              = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	gzipReaders                          sync.Pool
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	portFile := flag.String("port-file", "", "write the chosen port here once listening")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", traces)
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, spans.Load())
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "spans %d requests %d rejected %d bytes %d\n",
			spans.Load(), requests.Load(), rejected.Load(), bodyBytes.Load())
	})

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *portFile != "" {
		port := strconv.Itoa(listener.Addr().(*net.TCPAddr).Port)
		if err := os.WriteFile(*portFile, []byte(port+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(http.Serve(listener, mux))
}

// traces handles one OTLP/HTTP export: 200 and an empty response when the body
// is a well-formed protobuf request, 400 (and nothing counted) otherwise.
func traces(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if contentType := r.Header.Get("Content-Type"); !strings.HasPrefix(contentType, "application/x-protobuf") {
		rejected.Add(1)
		http.Error(w, "only application/x-protobuf is accepted, not "+contentType, http.StatusUnsupportedMediaType)
		return
	}
	buffer := buffers.Get().(*bytes.Buffer)
	defer buffers.Put(buffer)
	buffer.Reset()
	if err := readBody(buffer, r); err != nil {
		rejected.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	count, err := countSpans(buffer.Bytes())
	if err != nil {
		rejected.Add(1)
		http.Error(w, "malformed ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	spans.Add(int64(count))
	requests.Add(1)
	bodyBytes.Add(int64(buffer.Len()))
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse is zero bytes
}

// readBody reads the request body into buffer, inflating it when it is gzip-encoded.
func readBody(buffer *bytes.Buffer, r *http.Request) error {
	switch encoding := r.Header.Get("Content-Encoding"); encoding {
	case "", "identity":
		_, err := buffer.ReadFrom(r.Body)
		return err
	case "gzip":
		reader, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if reader == nil {
			reader, err = gzip.NewReader(r.Body)
		} else {
			err = reader.Reset(r.Body)
		}
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer gzipReaders.Put(reader)
		if _, err := buffer.ReadFrom(reader); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("unsupported Content-Encoding %q", encoding)
	}
}

// countSpans counts ExportTraceServiceRequest.resource_spans[].scope_spans[].spans[].
func countSpans(request []byte) (int, error) {
	total := 0
	err := eachField(request, requestResourceSpans, func(resourceSpans []byte) error {
		return eachField(resourceSpans, resourceScopeSpans, func(scope []byte) error {
			return eachField(scope, scopeSpans, func([]byte) error {
				total++
				return nil
			})
		})
	})
	return total, err
}

var errTruncated = errors.New("truncated field")

// eachField calls body for every length-delimited field numbered field in message, skipping
// every other field by its wire type (https://protobuf.dev/programming-guides/encoding/).
func eachField(message []byte, field uint64, body func([]byte) error) error {
	for len(message) > 0 {
		tag, n := uvarint(message)
		if n <= 0 {
			return errTruncated
		}
		message = message[n:]
		switch tag & 7 {
		case 0: // varint
			if _, n = uvarint(message); n <= 0 {
				return errTruncated
			}
			message = message[n:]
		case 1: // fixed64
			if len(message) < 8 {
				return errTruncated
			}
			message = message[8:]
		case 2: // length-delimited
			length, n := uvarint(message)
			if n <= 0 || length > uint64(len(message)-n) {
				return errTruncated
			}
			value := message[n : n+int(length)]
			message = message[n+int(length):]
			if tag>>3 == field {
				if err := body(value); err != nil {
					return err
				}
			}
		case 5: // fixed32
			if len(message) < 4 {
				return errTruncated
			}
			message = message[4:]
		default:
			return fmt.Errorf("wire type %d (groups are not used by OTLP)", tag&7)
		}
	}
	return nil
}

// uvarint decodes a base-128 varint; n <= 0 when it is truncated or longer than 10 bytes.
func uvarint(b []byte) (value uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		value |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return value, i + 1
		}
	}
	return 0, 0
}
