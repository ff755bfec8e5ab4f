package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

const receiveTimeout = 10 * time.Second

// writeResources writes a resources file in the format the load client writes: one
// length-delimited DiscoveryResponse per type.
func writeResources(t *testing.T, path string, clusters []string, listeners []string) {
	t.Helper()
	byType := []struct {
		typeURL string
		items   []proto.Message
	}{
		{resource.ClusterType, nil},
		{resource.ListenerType, nil},
	}
	for _, name := range clusters {
		byType[0].items = append(byType[0].items, &cluster.Cluster{Name: name})
	}
	for _, name := range listeners {
		byType[1].items = append(byType[1].items, &listener.Listener{Name: name})
	}

	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(f)
	for _, group := range byType {
		response := &discovery.DiscoveryResponse{TypeUrl: group.typeURL}
		for _, item := range group.items {
			packed, err := anypb.New(item)
			if err != nil {
				t.Fatal(err)
			}
			response.Resources = append(response.Resources, packed)
		}
		if _, err := protodelim.MarshalTo(out, response); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// receive waits for one message from a stream, failing the test after receiveTimeout.
func receive[T any](t *testing.T, recv func() (T, error)) T {
	t.Helper()
	type result struct {
		message T
		err     error
	}
	done := make(chan result, 1)
	go func() {
		message, err := recv()
		done <- result{message, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("receive: %v", r.err)
		}
		return r.message
	case <-time.After(receiveTimeout):
		t.Fatalf("no message within %s", receiveTimeout)
	}
	panic("unreachable")
}

func clusterNames(t *testing.T, items []*anypb.Any) []string {
	t.Helper()
	var names []string
	for _, item := range items {
		var c cluster.Cluster
		if err := item.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		names = append(names, c.GetName())
	}
	slices.Sort(names)
	return names
}

func httpCall(t *testing.T, method, address string) (int, string) {
	t.Helper()
	request, err := http.NewRequest(method, address, nil)
	if err != nil {
		t.Fatal(err)
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response.StatusCode, string(body)
}

func TestPeerServesSotwAndDelta(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first.pb")
	second := filepath.Join(dir, "second.pb")
	writeResources(t, first, []string{"c1"}, []string{"l1"})
	writeResources(t, second, []string{"c1", "c2"}, []string{"l1"})

	p, err := startPeer("127.0.0.1:0", "127.0.0.1:0", first)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	control := "http://" + p.controlAddr()

	if status, body := httpCall(t, http.MethodGet, control+"/healthz"); status != http.StatusOK {
		t.Fatalf("healthz: %d %q", status, body)
	}

	conn, err := grpc.NewClient(p.adsAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := discovery.NewAggregatedDiscoveryServiceClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// (a) State of the world: all clusters at version 1.
	sotw, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "sotw-node"}
	if err := sotw.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	response := receive(t, sotw.Recv)
	if response.GetVersionInfo() != "1" {
		t.Fatalf("sotw version %q, want 1", response.GetVersionInfo())
	}
	if names := clusterNames(t, response.GetResources()); !slices.Equal(names, []string{"c1"}) {
		t.Fatalf("sotw clusters %v, want [c1]", names)
	}
	// Acknowledge, so that the server watches for the next version.
	if err := sotw.Send(&discovery.DiscoveryRequest{
		Node: node, TypeUrl: resource.ClusterType,
		VersionInfo: response.GetVersionInfo(), ResponseNonce: response.GetNonce(),
	}); err != nil {
		t.Fatal(err)
	}

	// (b) Delta with an explicit wildcard subscription.
	delta, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deltaNode := &core.Node{Id: "delta-node"}
	if err := delta.Send(&discovery.DeltaDiscoveryRequest{
		Node: deltaNode, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"*"},
	}); err != nil {
		t.Fatal(err)
	}
	deltaResponse := receive(t, delta.Recv)
	var deltaNames []string
	for _, item := range deltaResponse.GetResources() {
		deltaNames = append(deltaNames, item.GetName())
	}
	if !slices.Equal(deltaNames, []string{"c1"}) {
		t.Fatalf("delta clusters %v, want [c1]", deltaNames)
	}
	if err := delta.Send(&discovery.DeltaDiscoveryRequest{
		Node: deltaNode, TypeUrl: resource.ClusterType, ResponseNonce: deltaResponse.GetNonce(),
	}); err != nil {
		t.Fatal(err)
	}

	// A file that does not decode is refused and does not use up a version.
	bad := filepath.Join(dir, "bad.pb")
	if err := os.WriteFile(bad, []byte{0x05, 0xff}, 0o644); err != nil {
		t.Fatal(err)
	}
	if status, body := httpCall(t, http.MethodPost, control+"/load?file="+url.QueryEscape(bad)); status != http.StatusBadRequest {
		t.Fatalf("load of a bad file: %d %q", status, body)
	}

	// (c) Loading a second file reaches both streams.
	status, body := httpCall(t, http.MethodPost, control+"/load?file="+url.QueryEscape(second))
	if status != http.StatusOK || body != "version 2\n" {
		t.Fatalf("load: %d %q", status, body)
	}

	deltaResponse = receive(t, delta.Recv)
	deltaNames = nil
	for _, item := range deltaResponse.GetResources() {
		deltaNames = append(deltaNames, item.GetName())
	}
	if !slices.Contains(deltaNames, "c2") {
		t.Fatalf("delta update %v does not contain c2", deltaNames)
	}

	response = receive(t, sotw.Recv)
	if response.GetVersionInfo() != "2" {
		t.Fatalf("sotw version %q, want 2", response.GetVersionInfo())
	}
	if names := clusterNames(t, response.GetResources()); !slices.Equal(names, []string{"c1", "c2"}) {
		t.Fatalf("sotw clusters %v, want [c1 c2]", names)
	}

	// Stopping does not wait for the clients to close their streams.
	start := time.Now()
	p.stop()
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("stop with open streams took %s", elapsed)
	}
	if _, err := sotw.Recv(); err == nil {
		t.Fatal("sotw stream still open after stop")
	}
}

func TestReadResourcesRejectsUnknownType(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unknown.pb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protodelim.MarshalTo(f, &discovery.DiscoveryResponse{TypeUrl: "type.googleapis.com/no.such.Type"}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	p := &peer{cache: cache.NewSnapshotCache(true, oneSnapshot{}, nil)}
	if _, err := p.load(path); err == nil || !strings.Contains(err.Error(), "unknown resource type") {
		t.Fatalf("load of an unknown type: %v", err)
	}
	if p.version != 0 {
		t.Fatalf("a refused load used up version %d", p.version)
	}
}
