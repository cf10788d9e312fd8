// A fake network-filter library exporting nine of the ten entry points Envoy
// resolves: envoyGoFilterOnSemaDec is missing, so loading must fail.
typedef unsigned long long GoUint64;
typedef long long GoInt;

GoUint64 envoyGoFilterOnNetworkFilterConfig(GoUint64 a, GoUint64 b, GoUint64 c, GoUint64 d) {
  (void)a, (void)b, (void)c, (void)d;
  return 100;
}
GoUint64 envoyGoFilterOnDownstreamConnection(void *w, GoUint64 a, GoUint64 b, GoUint64 c) {
  (void)w, (void)a, (void)b, (void)c;
  return 0;
}
GoUint64 envoyGoFilterOnDownstreamData(void *w, GoUint64 a, GoUint64 b, GoInt c, GoInt d) {
  (void)w, (void)a, (void)b, (void)c, (void)d;
  return 0;
}
void envoyGoFilterOnDownstreamEvent(void *w, GoInt e) { (void)w, (void)e; }
GoUint64 envoyGoFilterOnDownstreamWrite(void *w, GoUint64 a, GoUint64 b, GoInt c, GoInt d) {
  (void)w, (void)a, (void)b, (void)c, (void)d;
  return 0;
}
void envoyGoFilterOnUpstreamConnectionReady(void *w, GoUint64 id) { (void)w, (void)id; }
void envoyGoFilterOnUpstreamConnectionFailure(void *w, GoInt r, GoUint64 id) { (void)w, (void)r, (void)id; }
void envoyGoFilterOnUpstreamData(void *w, GoUint64 a, GoUint64 b, GoInt c, GoInt d) {
  (void)w, (void)a, (void)b, (void)c, (void)d;
}
void envoyGoFilterOnUpstreamEvent(void *w, GoInt e) { (void)w, (void)e; }
