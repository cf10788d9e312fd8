package xds

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// callbacks track, per stream, what was sent and what the client accepted, and turn
// rejections into Nacks. go-control-plane calls them synchronously from the stream
// goroutines, so they only take the state lock briefly; user callbacks run after it.
type callbacks struct{ s *Server }

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.open(streamKey{id: id})
	return nil
}

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.open(streamKey{delta: true, id: id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.close(streamKey{id: id}) }

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.close(streamKey{delta: true, id: id})
}

func (c callbacks) open(k streamKey) {
	c.s.stateMu.Lock()
	c.s.streams[k] = &streamState{
		sent:  make(map[string]map[string]string),
		acked: make(map[string]map[string]string),
	}
	c.s.stateMu.Unlock()
	c.s.metrics.streams.WithLabelValues(mode(k)).Inc()
}

func (c callbacks) close(k streamKey) {
	c.s.stateMu.Lock()
	delete(c.s.streams, k)
	c.s.stateMu.Unlock()
	c.s.metrics.streams.WithLabelValues(mode(k)).Dec()
}

func mode(k streamKey) string {
	if k.delta {
		return "delta"
	}
	return "sotw"
}

func (c callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	c.request(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, req.GetResourceNames())
	return nil
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	c.request(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, nil)
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	sent := make([]sentResource, 0, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		// Every served type has its name in field 1 (Cluster.name,
		// ClusterLoadAssignment.cluster_name, RouteConfiguration.name); the bytes are the
		// deterministic encoding, so their hash is the resource's version.
		sent = append(sent, sentResource{name: nameField(a.GetValue()), hash: cachev3.HashResource(a.GetValue())})
	}
	c.response(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), sent, nil)
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	sent := make([]sentResource, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		sent = append(sent, sentResource{name: r.GetName(), hash: r.GetVersion()})
	}
	c.response(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), sent, resp.GetRemovedResources())
}

func (c callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
}

func (c callbacks) response(k streamKey, typeURL, nonce string, sent []sentResource, removed []string) {
	c.s.metrics.pushes.WithLabelValues(typeURL).Inc()
	c.s.stateMu.Lock()
	defer c.s.stateMu.Unlock()
	st := c.s.streams[k]
	if st == nil {
		return
	}
	m := st.sent[typeURL]
	if m == nil {
		m = make(map[string]string, len(sent))
		st.sent[typeURL] = m
	}
	for _, r := range sent {
		m[r.name] = r.hash
	}
	for _, name := range removed {
		delete(m, name)
		delete(st.acked[typeURL], name)
	}
	if len(st.inflight) == maxInflight {
		copy(st.inflight, st.inflight[1:])
		st.inflight = st.inflight[:maxInflight-1]
	}
	st.inflight = append(st.inflight, response{typeURL: typeURL, nonce: nonce, resources: sent})
}

// request handles a client request: an ACK or NACK when it answers a response we remember.
func (c callbacks) request(k streamKey, node *corev3.Node, typeURL, nonce, errMsg string, nack bool, names []string) {
	c.s.stateMu.Lock()
	st := c.s.streams[k]
	if st == nil {
		c.s.stateMu.Unlock()
		return
	}
	if node.GetId() != "" {
		st.node = node.GetId()
	}
	var resp *response
	if nonce != "" {
		for i := range st.inflight {
			if st.inflight[i].nonce == nonce && st.inflight[i].typeURL == typeURL {
				r := st.inflight[i]
				resp = &r
				st.inflight = append(st.inflight[:i], st.inflight[i+1:]...)
				break
			}
		}
	}
	if resp == nil && !nack {
		// A first request, a subscription change, or an answer to a response of a
		// previous connection: nothing to acknowledge.
		c.s.stateMu.Unlock()
		return
	}
	nodeID := st.node
	if !nack {
		m := st.acked[typeURL]
		if m == nil {
			m = make(map[string]string, len(resp.resources))
			st.acked[typeURL] = m
		}
		ackNames := make([]string, 0, len(resp.resources))
		for _, r := range resp.resources {
			m[r.name] = r.hash
			ackNames = append(ackNames, r.name)
		}
		c.s.stateMu.Unlock()
		c.s.metrics.acks.WithLabelValues(typeURL).Inc()
		if c.s.opts.OnAck != nil && len(ackNames) > 0 {
			c.s.opts.OnAck(Ack{Node: nodeID, TypeURL: typeURL, ResourceNames: ackNames})
		}
		return
	}

	// A NACK names the rejected response by its nonce; without a response to match (it
	// fell out of the window), the request's own resource names are the best guess.
	var nackNames []string
	if resp != nil {
		nackNames = make([]string, 0, len(resp.resources))
		nm := c.s.nacks[typeURL]
		if nm == nil {
			nm = make(map[string]nackState)
			c.s.nacks[typeURL] = nm
		}
		for _, r := range resp.resources {
			nm[r.name] = nackState{hash: r.hash, message: errMsg}
			nackNames = append(nackNames, r.name)
		}
	} else {
		nackNames = append(nackNames, names...)
		nm := c.s.nacks[typeURL]
		if nm == nil {
			nm = make(map[string]nackState)
			c.s.nacks[typeURL] = nm
		}
		for _, name := range names {
			if h, ok := c.s.hashes[typeURL][name]; ok {
				nm[name] = nackState{hash: h, message: errMsg}
			}
		}
	}
	c.s.stateMu.Unlock()

	c.s.metrics.nacks.WithLabelValues(typeURL).Inc()
	c.s.log.Warn("xds: client rejected resources", "node", nodeID, "type", typeURL, "resources", nackNames, "error", errMsg)
	if c.s.opts.OnNack != nil {
		c.s.opts.OnNack(Nack{Node: nodeID, TypeURL: typeURL, ResourceNames: nackNames, Message: errMsg})
	}
}

// nameField returns field 1 of an encoded message when it is a string ("" otherwise).
func nameField(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}
