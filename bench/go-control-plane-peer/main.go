// Command go-control-plane-peer is the comparison peer for `make bench-xds`: an ADS server
// built from Envoy's go-control-plane library that serves the same resources as lattice-xds,
// so that one load client can measure both servers side by side.
//
// It serves ADS (state-of-the-world and delta) over plain gRPC. Every node gets the same single
// snapshot. A small HTTP endpoint lets the benchmark replace that snapshot while clients are
// connected.
//
// A resources file is a sequence of length-delimited (varint length prefix)
// envoy.service.discovery.v3.DiscoveryResponse messages, one per resource type, each with
// type_url and resources set. Loading a file replaces the whole snapshot: a type that the file
// does not mention is served as empty.
//
// Usage:
//
//	go-control-plane-peer -listen 127.0.0.1:0 -control 127.0.0.1:0 [-resources FILE]
//
// Once both ports are bound it prints one line to stdout:
//
//	ready ads=127.0.0.1:PORT control=127.0.0.1:PORT
//
// Control endpoint:
//
//	POST /load?file=PATH  load PATH as the next snapshot version; answers "version N"
//	GET  /healthz         200 once the ADS port is listening
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"

	// The resource types that lattice-xds serves, and the extension types nested in them, so
	// that Any values can be turned into typed messages through the global registry.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// snapshotKey is the one cache key that every node maps to.
const snapshotKey = "bench"

// oneSnapshot maps every node to the same snapshot key.
type oneSnapshot struct{}

func (oneSnapshot) ID(*core.Node) string { return snapshotKey }

// peer is a running ADS server plus its control endpoint.
type peer struct {
	cache   cache.SnapshotCache
	cancel  context.CancelFunc
	grpc    *grpc.Server
	http    *http.Server
	ads     net.Listener
	control net.Listener
	ready   atomic.Bool

	stopOnce sync.Once

	loadMu  sync.Mutex // serialises loads so that versions go up one by one
	version int
}

// startPeer binds both addresses, loads the initial resources file if one is given, and
// starts serving. Ports may be 0; the bound addresses are in adsAddr and controlAddr.
func startPeer(listenAddr, controlAddr, resourcesFile string) (*peer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{
		cache:  cache.NewSnapshotCache(true, oneSnapshot{}, nil),
		cancel: cancel,
	}
	if resourcesFile != "" {
		if _, err := p.load(resourcesFile); err != nil {
			cancel()
			return nil, err
		}
	}

	ads, err := net.Listen("tcp", listenAddr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("listen %s: %w", listenAddr, err)
	}
	control, err := net.Listen("tcp", controlAddr)
	if err != nil {
		ads.Close()
		cancel()
		return nil, fmt.Errorf("listen %s: %w", controlAddr, err)
	}
	p.ads, p.control = ads, control

	p.grpc = grpc.NewServer(grpc.MaxConcurrentStreams(1 << 20))
	discovery.RegisterAggregatedDiscoveryServiceServer(p.grpc, server.NewServer(ctx, p.cache, nil))

	mux := http.NewServeMux()
	mux.HandleFunc("/load", p.handleLoad)
	mux.HandleFunc("/healthz", p.handleHealthz)
	p.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	go func() {
		if err := p.grpc.Serve(ads); err != nil {
			log.Printf("ads server: %v", err)
		}
	}()
	// The listener is already bound, so connections queue until Serve accepts them.
	p.ready.Store(true)
	go func() {
		if err := p.http.Serve(control); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("control server: %v", err)
		}
	}()
	return p, nil
}

func (p *peer) adsAddr() string     { return p.ads.Addr().String() }
func (p *peer) controlAddr() string { return p.control.Addr().String() }

// stop ends both servers; calling it again does nothing. Cancelling the xDS server's context
// ends the open ADS streams, which never finish by themselves; whatever is still open after a
// short grace period is cut.
func (p *peer) stop() {
	p.stopOnce.Do(func() {
		p.ready.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.http.Shutdown(ctx)

		p.cancel()
		done := make(chan struct{})
		go func() {
			p.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			p.grpc.Stop()
			<-done
		}
	})
}

// load reads a resources file and makes it the next snapshot version, which it returns.
func (p *peer) load(path string) (string, error) {
	resources, err := readResources(path)
	if err != nil {
		return "", err
	}

	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	version := strconv.Itoa(p.version + 1)
	snapshot, err := cache.NewSnapshot(version, resources)
	if err != nil {
		return "", err
	}
	if err := p.cache.SetSnapshot(context.Background(), snapshotKey, snapshot); err != nil {
		return "", err
	}
	p.version++
	return version, nil
}

// readResources decodes a resources file into typed messages grouped by type URL.
func readResources(path string) (map[resource.Type][]types.Resource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	in := bufio.NewReader(f)
	opts := protodelim.UnmarshalOptions{MaxSize: -1}
	out := map[resource.Type][]types.Resource{}
	for index := 0; ; index++ {
		var response discovery.DiscoveryResponse
		err := opts.UnmarshalFrom(in, &response)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: message %d: %w", path, index, err)
		}
		typeURL := response.GetTypeUrl()
		if typeURL == "" {
			return nil, fmt.Errorf("%s: message %d has no type_url", path, index)
		}
		items := out[typeURL]
		if items == nil {
			items = []types.Resource{}
		}
		for _, item := range response.GetResources() {
			if item.GetTypeUrl() != typeURL {
				return nil, fmt.Errorf("%s: message %d: resource of type %q in a %q response",
					path, index, item.GetTypeUrl(), typeURL)
			}
			message, err := anypb.UnmarshalNew(item, proto.UnmarshalOptions{})
			if err != nil {
				return nil, fmt.Errorf("%s: message %d: %w", path, index, err)
			}
			items = append(items, message)
		}
		out[typeURL] = items
	}
}

func (p *peer) handleLoad(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	path := r.URL.Query().Get("file")
	if path == "" {
		http.Error(w, "missing file parameter", http.StatusBadRequest)
		return
	}
	version, err := p.load(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "version %s\n", version)
}

func (p *peer) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	if !p.ready.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18000", "address for the ADS gRPC server")
	control := flag.String("control", "127.0.0.1:18001", "address for the HTTP control endpoint")
	resources := flag.String("resources", "", "resources file to serve as version 1 (optional)")
	flag.Parse()
	log.SetPrefix("go-control-plane-peer: ")
	log.SetFlags(0)

	p, err := startPeer(*listen, *control, *resources)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ready ads=%s control=%s\n", p.adsAddr(), p.controlAddr())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	p.stop()
}
