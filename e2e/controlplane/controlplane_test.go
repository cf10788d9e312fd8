package controlplane_test

import (
	"strings"
	"testing"
	"time"
)

func TestThriftMetaRouterEditUnderLoad(t *testing.T) { metaRouterEditUnderLoad(t, thriftPeers) }
func TestDubboMetaRouterEditUnderLoad(t *testing.T)  { metaRouterEditUnderLoad(t, dubboPeers) }
func TestThriftControllerRestart(t *testing.T)       { controllerRestart(t, thriftPeers) }
func TestDubboControllerRestart(t *testing.T)        { controllerRestart(t, dubboPeers) }
func TestThriftEndpointAdded(t *testing.T)           { endpointAdded(t, thriftPeers) }
func TestDubboEndpointAdded(t *testing.T)            { endpointAdded(t, dubboPeers) }

// resyncBound is how long a plugin may take to get the configuration of a controller that
// was down for about three seconds, from the controller's restart. The xDS client retries
// after jittered delays that double from 250 ms (each between half and all of 250 ms, 500 ms,
// 1 s, 2 s, 4 s, ...): by three seconds it has made three or four attempts, and the next one
// comes at most 4 s later. The bound leaves room for a loaded machine.
const resyncBound = 8 * time.Second

// deployment is one service behind the proxy: its servers, the controller serving its
// manifests, and the plugin's listener.
type deployment struct {
	mesh     *mesh
	ctrl     *controller
	listener string
	servers  map[string]string // name -> address
}

// deploy starts the servers named (the first two are the endpoints of subsets v1 and v2,
// any others are started but not in the mesh yet), the controller on a mesh whose MetaRouter
// sends everything to v1, and the plugin; it returns once a call was answered by v1.
func deploy(t *testing.T, p peers, names ...string) *deployment {
	t.Helper()
	d := &deployment{servers: map[string]string{}}
	start := time.Now()
	for _, n := range names {
		d.servers[n] = p.start(t, n)
	}
	d.mesh = newMesh(t, p.protocol)
	d.mesh.writeService(t, endpoint{d.servers[names[0]], "v1"}, endpoint{d.servers[names[1]], "v2"})
	d.mesh.writeRouter(t, "v1")
	d.ctrl = startController(t, d.mesh.dir)
	h := startHost(t, d.mesh, d.ctrl.xds)
	d.listener = h.Listeners[0]
	if p.protocol == "dubbo" {
		t.Cleanup(func() { closeDubboConsumers(d.listener) })
	}
	waitRouted(t, p, d.listener, names[0])
	t.Logf("%s: %d servers, controller (xDS %s) and plugin (listener %s) up in %v; routes to %s",
		p.protocol, len(names), d.ctrl.xds, d.listener, time.Since(start).Round(time.Millisecond), names[0])
	return d
}

// waitRouted waits until a call through the listener is answered by server: the plugin has
// its first configuration from the controller.
func waitRouted(t *testing.T, p peers, addr, server string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := p.dial(addr, 0)
		if err != nil {
			last = err.Error()
			continue
		}
		reply, err := c.echo("hello")
		c.close()
		if err != nil {
			last = err.Error()
			continue
		}
		if got, err := serverOf(reply, "hello"); err == nil && got == server {
			return
		}
		last = "reply " + reply
	}
	t.Fatalf("no call through %s answered by %s within 20s; last: %s", addr, server, last)
}

// metaRouterEditUnderLoad edits the MetaRouter twice (v1 -> v2 -> v1) while four clients
// call without pause on connections of their own: each time the traffic moves within
// moveBound of the write. Then it writes a broken MetaRouter that would route to v2: the
// traffic stays on v1. No call of the whole run fails.
func metaRouterEditUnderLoad(t *testing.T, p peers) {
	d := deploy(t, p, "v1", "v2")
	l := startLoad(t, p, d.listener, 4)
	loadStart := time.Now()
	time.Sleep(time.Second)

	type edit struct {
		at       time.Time
		old, new string
	}
	var edits []edit
	for _, to := range []string{"v2", "v1"} {
		e := edit{at: time.Now(), new: to, old: map[string]string{"v1": "v2", "v2": "v1"}[to]}
		d.mesh.writeRouter(t, to)
		edits = append(edits, e)
		if _, ok := l.waitFor(to, e.at, 10*time.Second); !ok {
			l.halt()
			t.Fatalf("MetaRouter -> %s: no call answered by %s within 10s of the write; %s", to, to,
				summarize(l.records(), e.at, time.Time{}))
		}
		time.Sleep(time.Until(e.at.Add(moveBound + time.Second)))
	}
	broken := time.Now()
	d.mesh.writeBrokenRouter(t, "v2")
	time.Sleep(moveBound + 500*time.Millisecond)
	end := time.Now()
	l.halt()
	recs := l.records()
	assertOnly(t, recs, broken, end, "v1", "after a broken MetaRouter to v2 was written")
	if !strings.Contains(d.ctrl.log.String(), "timout") {
		t.Errorf("the controller's log does not name the misspelt field of the broken MetaRouter (timout)")
	}

	s := assertNoErrors(t, recs, time.Time{}, time.Time{}, "the whole run")
	t.Logf("%s load, 4 clients over %v: %s", p.protocol, time.Since(loadStart).Round(time.Millisecond), s)
	assertOnly(t, recs, time.Time{}, edits[0].at, "v1", "before the first edit")
	for i, e := range edits {
		until := broken
		if i+1 < len(edits) {
			until = edits[i+1].at
		}
		var window []record
		for _, r := range recs {
			if !r.start.Before(e.at) && r.start.Before(until) {
				window = append(window, r)
			}
		}
		m, ok := measureMove(window, e.at, e.old, e.new)
		if !ok {
			t.Errorf("MetaRouter %s -> %s: no reply from %s", e.old, e.new, e.new)
			continue
		}
		t.Logf("MetaRouter %s -> %s: first reply from %s %v after the write, last call to %s started %v after it; %s",
			e.old, e.new, e.new, m.first.Round(time.Millisecond), e.old, m.settled.Round(time.Millisecond),
			summarize(window, time.Time{}, time.Time{}))
		if m.first > moveBound || m.settled > moveBound {
			t.Errorf("MetaRouter %s -> %s: traffic moved %v / %v after the write; want within %v",
				e.old, e.new, m.first, m.settled, moveBound)
		}
		assertOnly(t, recs, e.at.Add(moveBound), until, e.new, "calls from "+moveBound.String()+" after the edit to "+e.new)
	}
}

// controllerRestart kills the controller while clients call: the plugin keeps routing on
// the configuration it has, also once the MetaRouter file changes while the controller is
// down; when the controller comes back on the same address, the plugin reconnects and gets
// that change. No call of the whole run fails.
func controllerRestart(t *testing.T, p peers) {
	d := deploy(t, p, "v1", "v2")
	l := startLoad(t, p, d.listener, 2)
	loadStart := time.Now()
	time.Sleep(500 * time.Millisecond)

	killed := time.Now()
	d.ctrl.kill()
	time.Sleep(1500 * time.Millisecond)
	written := time.Now()
	d.mesh.writeRouter(t, "v2")
	time.Sleep(1500 * time.Millisecond)

	restarted := time.Now()
	d.ctrl.start()
	ready := time.Now()
	first, ok := l.waitFor("v2", restarted, 20*time.Second)
	if !ok {
		l.halt()
		t.Fatalf("no call answered by v2 within 20s of the controller's restart; %s",
			summarize(l.records(), restarted, time.Time{}))
	}
	time.Sleep(time.Second)
	end := time.Now()
	l.halt()
	recs := l.records()

	s := assertNoErrors(t, recs, time.Time{}, time.Time{}, "the whole run")
	down := summarize(recs, killed, restarted)
	t.Logf("%s load, 2 clients over %v: %s; while the controller was down (%v): %s",
		p.protocol, time.Since(loadStart).Round(time.Millisecond), s, restarted.Sub(killed).Round(time.Millisecond), down)
	assertOnly(t, recs, killed, restarted, "v1", "while the controller was down")
	if down.errors == 0 && down.servers["v1"] < 10 {
		t.Errorf("while the controller was down: %s; want calls going on", down)
	}
	resync := first.Sub(restarted)
	t.Logf("controller restarted (ready in %v): first reply from v2 (the edit made %v before the restart) %v after the restart",
		ready.Sub(restarted).Round(time.Millisecond), restarted.Sub(written).Round(time.Millisecond), resync.Round(time.Millisecond))
	if resync > resyncBound {
		t.Errorf("the plugin resynced %v after the controller's restart; want within %v", resync, resyncBound)
	}
	assertOnly(t, recs, first, end, "v2", "after the resync")
}

// endpointAdded adds a third server to the ServiceEntry, labelled v1, while clients call:
// within moveBound it answers some of the calls routed to subset v1. No call fails.
func endpointAdded(t *testing.T, p peers) {
	d := deploy(t, p, "v1", "v2", "v1b")
	l := startLoad(t, p, d.listener, 4)
	loadStart := time.Now()
	time.Sleep(time.Second)

	added := time.Now()
	d.mesh.writeService(t, endpoint{d.servers["v1"], "v1"}, endpoint{d.servers["v2"], "v2"},
		endpoint{d.servers["v1b"], "v1"})
	first, ok := l.waitFor("v1b", added, 10*time.Second)
	if !ok {
		l.halt()
		t.Fatalf("the added endpoint got no call within 10s; %s", summarize(l.records(), added, time.Time{}))
	}
	time.Sleep(time.Until(added.Add(moveBound + time.Second)))
	end := time.Now()
	l.halt()
	recs := l.records()

	s := assertNoErrors(t, recs, time.Time{}, time.Time{}, "the whole run")
	after := summarize(recs, first, end)
	took := first.Sub(added)
	t.Logf("%s load, 4 clients over %v: %s; endpoint added: first reply from it %v after the write; since then %s",
		p.protocol, time.Since(loadStart).Round(time.Millisecond), s, took.Round(time.Millisecond), after)
	assertOnly(t, recs, time.Time{}, added, "v1", "before the endpoint was added")
	if took > moveBound {
		t.Errorf("the added endpoint answered first %v after the write; want within %v", took, moveBound)
	}
	if after.servers["v1"] == 0 || after.servers["v1b"] == 0 || after.servers["v2"] != 0 {
		t.Errorf("after the endpoint was added: %v; want subset v1's calls spread over v1 and v1b", after.servers)
	}
}
