// abihost: a test fixture that loads a Go network-filter shared library the
// way Envoy v1.36's contrib envoy.filters.network.golang does, and drives it
// with real TCP sockets on several worker threads, each with its own epoll
// loop. It implements the host side of the ABI described in
// shared/reference/envoy-golang-network-abi.md and nothing Envoy lacks.
//
// Usage:
//   abihost --library PATH [--library-id ID] [--workers N]
//           [--connect-timeout-ms MS] [--log-level trace|debug|info|warn|error]
//           [--plugin NAME] --listen IP:PORT [--plugin NAME] [--config-file FILE]
//           [--listen ...]
// --plugin before the first --listen is the default plugin name; --plugin and
// --config-file after a --listen apply to that listener (one filter chain each,
// so one envoyGoFilterOnNetworkFilterConfig call each). A listener without a
// config file passes 0 bytes, like an absent plugin_config.
// Once listening it prints one line on stdout:
//   ready listeners=IP:PORT[,IP:PORT...] workers=TID[,TID...]
// and serves until SIGTERM or SIGINT.
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------- ABI types

typedef unsigned long long GoUint64;
typedef long long GoInt;
typedef struct {
  const char *p;
  ptrdiff_t n;
} GoString;

enum {
  CAPIOK = 0,
  CAPIFilterIsGone = -1,
  CAPIFilterIsDestroy = -2,
  CAPIYield = -6,
};

enum { EV_REMOTE_CLOSE = 0, EV_LOCAL_CLOSE = 1, EV_CONNECTED = 2 };
enum { CLOSE_FLUSH_WRITE = 0, CLOSE_NO_FLUSH = 1, CLOSE_FLUSH_WRITE_AND_DELAY = 2,
       CLOSE_ABORT = 3, CLOSE_ABORT_RESET = 4 };
enum { POOL_LOCAL_CONNECTION_FAILURE = 1, POOL_REMOTE_CONNECTION_FAILURE = 2, POOL_TIMEOUT = 3 };
enum { STATE_READ_ONLY = 0, STATE_MUTABLE = 1 };
enum { LIFE_SPAN_CONNECTION = 2 };

// The ten entry points Envoy resolves (NetworkFilterDsoImpl).
static struct {
  GoUint64 (*on_config)(GoUint64, GoUint64, GoUint64, GoUint64);
  GoUint64 (*on_downstream_connection)(void *, GoUint64, GoUint64, GoUint64);
  GoUint64 (*on_downstream_data)(void *, GoUint64, GoUint64, GoInt, GoInt);
  void (*on_downstream_event)(void *, GoInt);
  GoUint64 (*on_downstream_write)(void *, GoUint64, GoUint64, GoInt, GoInt);
  void (*on_upstream_ready)(void *, GoUint64);
  void (*on_upstream_failure)(void *, GoInt, GoUint64);
  void (*on_upstream_data)(void *, GoUint64, GoUint64, GoInt, GoInt);
  void (*on_upstream_event)(void *, GoInt);
  void (*on_sema_dec)(void *);
} dso;

static const struct {
  const char *name;
  size_t offset;
} dso_symbols[] = {
    {"envoyGoFilterOnNetworkFilterConfig", offsetof(__typeof__(dso), on_config)},
    {"envoyGoFilterOnDownstreamConnection", offsetof(__typeof__(dso), on_downstream_connection)},
    {"envoyGoFilterOnDownstreamData", offsetof(__typeof__(dso), on_downstream_data)},
    {"envoyGoFilterOnDownstreamEvent", offsetof(__typeof__(dso), on_downstream_event)},
    {"envoyGoFilterOnDownstreamWrite", offsetof(__typeof__(dso), on_downstream_write)},
    {"envoyGoFilterOnUpstreamConnectionReady", offsetof(__typeof__(dso), on_upstream_ready)},
    {"envoyGoFilterOnUpstreamConnectionFailure", offsetof(__typeof__(dso), on_upstream_failure)},
    {"envoyGoFilterOnUpstreamData", offsetof(__typeof__(dso), on_upstream_data)},
    {"envoyGoFilterOnUpstreamEvent", offsetof(__typeof__(dso), on_upstream_event)},
    {"envoyGoFilterOnSemaDec", offsetof(__typeof__(dso), on_sema_dec)},
};

// ---------------------------------------------------------------- logging

enum { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
static int log_level = LOG_INFO;
static const char *const level_names[] = {"trace", "debug", "info", "warn", "error", "critical"};

__attribute__((format(printf, 2, 3))) static void logf_(int level, const char *fmt, ...) {
  if (level < log_level) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  // One write per line so that lines from different threads do not interleave.
  char out[1100];
  int m = snprintf(out, sizeof out, "abihost[%s] %.*s\n", level_names[level], n, line);
  if (m > 0) (void)!write(STDERR_FILENO, out, (size_t)m < sizeof out ? (size_t)m : sizeof out - 1);
}
#define LOG(level, ...) logf_(LOG_##level, __VA_ARGS__)

static _Noreturn void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("abihost: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory");
  return p;
}

static void *xcalloc(size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (!p) die("out of memory");
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

// ---------------------------------------------------------------- buffers

// Envoy reads into 16 KiB slices up to the per-connection buffer limit (1 MiB).
#define SLICE_SIZE 16384
#define MAX_SLICES 64

struct obuf {
  char *data;
  size_t off, len, cap;
};

static void obuf_append(struct obuf *b, const void *p, size_t n) {
  if (b->off > 0 && b->off + b->len + n > b->cap) {
    memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
  }
  if (b->off + b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->off + b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) die("out of memory");
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->off + b->len, p, n);
  b->len += n;
}

static void obuf_consume(struct obuf *b, size_t n) {
  b->off += n;
  b->len -= n;
  if (b->len == 0) b->off = 0;
}

enum send_result { SEND_DONE, SEND_AGAIN, SEND_FAILED };

// obuf_send writes as much of b to fd as the socket takes: all of it (SEND_DONE), until the
// socket is full (SEND_AGAIN: wait for EPOLLOUT), or until the peer is gone (SEND_FAILED).
static enum send_result obuf_send(struct obuf *b, int fd) {
  while (b->len > 0) {
    ssize_t n = send(fd, b->data + b->off, b->len, MSG_NOSIGNAL);
    if (n > 0) {
      obuf_consume(b, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return SEND_AGAIN;
    return SEND_FAILED;
  }
  return SEND_DONE;
}

static void obuf_free(struct obuf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

// ---------------------------------------------------------------- workers

enum { SRC_WAKE, SRC_LISTENER, SRC_DCONN, SRC_UCONN, SRC_UTIMER };

struct evsrc {
  int kind;
};

struct task;
typedef void (*task_fn)(struct task *);

// A closure posted to a worker's dispatcher. data holds bytes copied from Go.
struct task {
  struct task *next;
  task_fn fn;
  void *obj;
  void *ptr;
  int a, b, c;
  size_t len;
  char data[];
};

struct lsock {
  struct evsrc src;
  int fd;
  struct listener *l;
};

struct deferred {
  void (*fn)(void *);
  void *obj;
};

struct worker {
  int idx;
  pthread_t thread;
  pid_t tid;
  int epfd;
  struct evsrc wake;
  int evfd;
  pthread_mutex_t mu;
  struct task *head, *tail;
  struct lsock *lsocks;
  struct deferred *deferred;
  size_t ndeferred, capdeferred;
  char *rbuf;                       // read scratch, MAX_SLICES * SLICE_SIZE
  unsigned long long slices[2 * MAX_SLICES + 2];
  atomic_bool stop;
};

struct listener {
  char *addr;
  struct sockaddr_storage ss;
  socklen_t sslen;
  char *plugin;
  char *config;
  size_t config_len;
  GoUint64 config_id;
  int port;
};

static struct worker *workers;
static int nworkers = 2;
static struct listener *listeners;
static int nlisteners;
static char *library_id = "abihost";
static int connect_timeout_ms = 5000;
static atomic_uint upstream_rr;
static _Thread_local struct worker *current_worker;

static void post(struct worker *w, struct task *t) {
  t->next = NULL;
  pthread_mutex_lock(&w->mu);
  bool was_empty = w->head == NULL;
  if (w->tail) w->tail->next = t;
  else w->head = t;
  w->tail = t;
  pthread_mutex_unlock(&w->mu);
  // The worker runs its queue after each loop iteration, so posting to
  // itself needs no wake-up.
  if (was_empty && current_worker != w) {
    uint64_t one = 1;
    (void)!write(w->evfd, &one, sizeof one);
  }
}

static struct task *new_task(task_fn fn, void *obj, const void *data, size_t len) {
  struct task *t = xmalloc(sizeof *t + len);
  memset(t, 0, sizeof *t);
  t->fn = fn;
  t->obj = obj;
  t->len = len;
  if (len && data) memcpy(t->data, data, len);
  return t;
}

// defer_call runs fn(obj) once the worker has finished the current loop
// iteration, like Envoy's deferred deletion: events already returned by
// epoll_wait may still reference obj.
static void defer_call(struct worker *w, void (*fn)(void *), void *obj) {
  if (w->ndeferred == w->capdeferred) {
    w->capdeferred = w->capdeferred ? w->capdeferred * 2 : 64;
    w->deferred = realloc(w->deferred, w->capdeferred * sizeof *w->deferred);
    if (!w->deferred) die("out of memory");
  }
  w->deferred[w->ndeferred++] = (struct deferred){fn, obj};
}

static void ep_ctl(struct worker *w, int op, int fd, uint32_t events, void *src) {
  struct epoll_event ev = {.events = events, .data.ptr = src};
  if (epoll_ctl(w->epfd, op, fd, &ev) < 0)
    LOG(ERROR, "epoll_ctl(%d, fd %d): %s", op, fd, strerror(errno));
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t n) {
  char ip[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(out, n, "%s:%u", ip, ntohs(a->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    snprintf(out, n, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else {
    snprintf(out, n, "unknown");
  }
}

// parse_ip_port accepts what Envoy's parseInternetAddressAndPortNoThrow
// accepts: "a.b.c.d:port" or "[v6]:port", numeric only.
static bool parse_ip_port(const char *s, size_t n, struct sockaddr_storage *ss, socklen_t *len) {
  char host[INET6_ADDRSTRLEN + 1];
  const char *colon;
  size_t hlen;
  const char *hstart = s;
  memset(ss, 0, sizeof *ss);
  if (n > 0 && s[0] == '[') {
    const char *rb = memchr(s, ']', n);
    if (!rb || rb + 1 >= s + n || rb[1] != ':') return false;
    hstart = s + 1;
    hlen = (size_t)(rb - hstart);
    colon = rb + 1;
  } else {
    colon = NULL;
    for (size_t i = n; i > 0; i--) {
      if (s[i - 1] == ':') {
        colon = s + i - 1;
        break;
      }
    }
    if (!colon) return false;
    hlen = (size_t)(colon - s);
  }
  if (hlen == 0 || hlen >= sizeof host) return false;
  memcpy(host, hstart, hlen);
  host[hlen] = 0;
  const char *p = colon + 1;
  size_t plen = (size_t)(s + n - p);
  if (plen == 0 || plen > 5) return false;
  unsigned port = 0;
  for (size_t i = 0; i < plen; i++) {
    if (p[i] < '0' || p[i] > '9') return false;
    port = port * 10 + (unsigned)(p[i] - '0');
  }
  if (port > 65535) return false;
  if (hstart != s) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return false;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    *len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return false;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *len = sizeof *a;
  }
  return true;
}

// read_all reads like Envoy's RawBufferSocket::doRead: until EAGAIN, EOF or
// the buffer limit, into the worker's slices. It returns the slice count.
static int read_all(struct worker *w, int fd, size_t *total, bool *eof, int *err) {
  size_t got = 0;
  *eof = false;
  *err = 0;
  for (;;) {
    size_t room = (size_t)MAX_SLICES * SLICE_SIZE - got;
    if (room == 0) break;
    ssize_t n = read(fd, w->rbuf + got, room);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (n == 0) {
      *eof = true;
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      *err = errno;
    }
    break;
  }
  *total = got;
  int ns = 0;
  for (size_t off = 0; off < got; off += SLICE_SIZE) {
    size_t l = got - off < SLICE_SIZE ? got - off : SLICE_SIZE;
    w->slices[2 * ns] = (unsigned long long)(uintptr_t)(w->rbuf + off);
    w->slices[2 * ns + 1] = l;
    ns++;
  }
  return ns;
}

static void set_linger_reset(int fd) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

// ---------------------------------------------------------------- filter state

struct fsentry {
  struct fsentry *next;
  char *key, *value;
  size_t key_len, value_len;
  int state_type, life_span, sharing;
};

// fs_set follows FilterStateImpl::setData: a ReadOnly key, or a change of
// state type, is an ENVOY_BUG and the set is ignored; Mutable keys are
// overwritten.
static void fs_set(struct fsentry **head, const char *k, size_t kl, const char *v, size_t vl,
                   int state_type, int life_span, int sharing) {
  if (life_span > LIFE_SPAN_CONNECTION || life_span < 0) {
    LOG(ERROR, "set filter state %.*s: life span %d has no Envoy value (Envoy would crash); ignored",
        (int)kl, k, life_span);
    return;
  }
  for (struct fsentry *e = *head; e; e = e->next) {
    if (e->key_len == kl && memcmp(e->key, k, kl) == 0) {
      if (e->state_type == STATE_READ_ONLY || e->state_type != state_type) {
        LOG(ERROR, "ENVOY_BUG: filter state %.*s is read-only or changes state type; ignored",
            (int)kl, k);
        return;
      }
      free(e->value);
      e->value = xstrndup(v, vl);
      e->value_len = vl;
      e->life_span = life_span;
      e->sharing = sharing;
      return;
    }
  }
  struct fsentry *e = xcalloc(sizeof *e);
  e->key = xstrndup(k, kl);
  e->key_len = kl;
  e->value = xstrndup(v, vl);
  e->value_len = vl;
  e->state_type = state_type;
  e->life_span = life_span;
  e->sharing = sharing;
  e->next = *head;
  *head = e;
}

static const struct fsentry *fs_get(struct fsentry *head, const char *k, size_t kl) {
  for (struct fsentry *e = head; e; e = e->next)
    if (e->key_len == kl && memcmp(e->key, k, kl) == 0) return e;
  return NULL;
}

static void fs_free(struct fsentry *head) {
  while (head) {
    struct fsentry *n = head->next;
    free(head->key);
    free(head->value);
    free(head);
    head = n;
  }
}

// anchor_string sets a wrapper's str_value_ and points a Go string at it.
static void anchor_string(char **anchor, const char *s, size_t n, GoString *ret) {
  char *copy = xstrndup(s, n);
  free(*anchor);
  *anchor = copy;
  ret->p = copy;
  ret->n = (ptrdiff_t)n;
}

// ---------------------------------------------------------------- downstream

struct dconn;

// fwrapper is Envoy's FilterWrapper: the handle Go holds. d is a weak
// reference to the filter, cleared when the filter is destroyed; the wrapper
// itself lives until Go's DownstreamFinalize.
struct fwrapper {
  pthread_mutex_t mu;
  struct dconn *d;
  char *str_value;
};

struct dconn {
  struct evsrc src;
  atomic_int refs;
  struct worker *w;
  struct listener *l;
  int fd;
  bool closed;      // Filter::closed_: a close event was raised
  bool destroyed;   // the Filter object is gone (weak_ptr expired)
  bool closing;     // a flushing local close is pending
  bool write_end;   // an end_stream write was accepted
  bool want_out;    // EPOLLOUT registered
  bool flush_scheduled;
  struct obuf out;
  char local[64], remote[64];
  pthread_mutex_t mu;  // Filter::mutex_ (filter state)
  struct fwrapper *wrapper;
  struct fsentry *fs;
};

static void dconn_unref(struct dconn *d) {
  if (atomic_fetch_sub(&d->refs, 1) != 1) return;
  obuf_free(&d->out);
  fs_free(d->fs);
  pthread_mutex_destroy(&d->mu);
  free(d);
}

// dconn_lock is weak_ptr::lock(): a counted reference, or NULL when the filter
// is gone.
static struct dconn *dconn_lock(struct fwrapper *fw) {
  pthread_mutex_lock(&fw->mu);
  struct dconn *d = fw->d;
  if (d) atomic_fetch_add(&d->refs, 1);
  pthread_mutex_unlock(&fw->mu);
  return d;
}

static void dconn_destroy(void *obj) {
  struct dconn *d = obj;
  d->destroyed = true;
  if (d->wrapper) {
    pthread_mutex_lock(&d->wrapper->mu);
    d->wrapper->d = NULL;
    pthread_mutex_unlock(&d->wrapper->mu);
  }
  LOG(DEBUG, "downstream %s filter destroyed", d->remote);
  dconn_unref(d);
}

static void dconn_update_events(struct dconn *d) {
  if (d->fd < 0) return;
  // While flushing a close, reads are off but a peer close is watched
  // (Envoy enables Write | Closed).
  uint32_t ev = d->closing ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP;
  if (d->out.len > 0 || d->closing) ev |= EPOLLOUT;
  d->want_out = ev & EPOLLOUT;
  ep_ctl(d->w, EPOLL_CTL_MOD, d->fd, ev, &d->src);
}

static void dconn_raise_close(struct dconn *d, int event, bool reset) {
  if (d->closed) return;
  pthread_mutex_lock(&d->mu);  // filter-state calls read closed_ from Go threads
  d->closed = true;
  pthread_mutex_unlock(&d->mu);
  if (d->fd >= 0) {
    if (reset) set_linger_reset(d->fd);
    close(d->fd);
    d->fd = -1;
  }
  obuf_free(&d->out);
  LOG(DEBUG, "downstream %s close event %d", d->remote, event);
  if (d->wrapper) dso.on_downstream_event(d->wrapper, event);
  defer_call(d->w, dconn_destroy, d);
}

static void dconn_flush(struct dconn *d) {
  switch (obuf_send(&d->out, d->fd)) {
  case SEND_DONE:
    break;
  case SEND_AGAIN:
    if (!d->want_out) dconn_update_events(d);
    return;
  case SEND_FAILED:
    dconn_raise_close(d, EV_REMOTE_CLOSE, false);
    return;
  }
  if (d->write_end) shutdown(d->fd, SHUT_WR);
  if (d->closing) {
    dconn_raise_close(d, EV_LOCAL_CLOSE, false);
    return;
  }
  if (d->want_out) dconn_update_events(d);
}

static void dconn_flush_deferred(void *obj) {
  struct dconn *d = obj;
  d->flush_scheduled = false;
  if (!d->closed && d->fd >= 0) dconn_flush(d);
  dconn_unref(d);
}

// dconn_write is Connection::write: the write filter chain (Go's OnWrite)
// sees the bytes first and may stop them.
static void dconn_write(struct dconn *d, const char *p, size_t n, bool end_stream) {
  // ConnectionImpl::write only refuses data after end_stream; writes during a
  // flushing close are flushed with the rest.
  if (d->write_end || d->fd < 0) {
    LOG(DEBUG, "downstream %s write of %zu bytes after end_stream dropped", d->remote, n);
    return;
  }
  unsigned long long slice[2] = {(unsigned long long)(uintptr_t)p, n};
  GoUint64 st = dso.on_downstream_write(d->wrapper, n, (GoUint64)(uintptr_t)slice, n ? 1 : 0,
                                        end_stream);
  if (st != 0) {
    LOG(DEBUG, "downstream %s OnDownstreamWrite stopped %zu bytes", d->remote, n);
    return;
  }
  if (d->closed) return;  // OnWrite cannot close synchronously, but be safe
  obuf_append(&d->out, p, n);
  if (end_stream) d->write_end = true;
  // Like Envoy's write event, the socket write happens once per loop
  // iteration, after all of the iteration's writes are buffered.
  if (!d->flush_scheduled) {
    d->flush_scheduled = true;
    atomic_fetch_add(&d->refs, 1);
    defer_call(d->w, dconn_flush_deferred, d);
  }
}

static void dconn_close(struct dconn *d, int type) {
  if (d->closed) {
    LOG(WARN, "downstream %s: connection has closed", d->remote);
    return;
  }
  switch (type) {
  case CLOSE_FLUSH_WRITE:
  case CLOSE_FLUSH_WRITE_AND_DELAY:
    if (d->out.len == 0) {
      dconn_raise_close(d, EV_LOCAL_CLOSE, false);
    } else {
      d->closing = true;
      dconn_update_events(d);
    }
    break;
  case CLOSE_NO_FLUSH:
    if (d->out.len > 0) (void)!send(d->fd, d->out.data + d->out.off, d->out.len, MSG_NOSIGNAL);
    dconn_raise_close(d, EV_LOCAL_CLOSE, false);
    break;
  case CLOSE_ABORT:
    dconn_raise_close(d, EV_LOCAL_CLOSE, false);
    break;
  case CLOSE_ABORT_RESET:
    dconn_raise_close(d, EV_LOCAL_CLOSE, true);
    break;
  default:
    LOG(ERROR, "downstream %s: close type %d is not an Envoy ConnectionCloseType", d->remote, type);
    dconn_raise_close(d, EV_LOCAL_CLOSE, false);
  }
}

static void dconn_on_readable(struct dconn *d) {
  if (d->closed || d->closing) return;
  struct worker *w = d->w;
  size_t total;
  bool eof;
  int err;
  int ns = read_all(w, d->fd, &total, &eof, &err);
  if (total > 0) {
    // The golang filter never enables half-close downstream: a FIN becomes
    // data with end_stream=false followed by RemoteClose.
    dso.on_downstream_data(d->wrapper, total, (GoUint64)(uintptr_t)w->slices, ns, 0);
    // Envoy drains the whole read buffer after OnData, whatever Go returned.
  }
  if (eof || err) dconn_raise_close(d, EV_REMOTE_CLOSE, false);
}

static void dconn_on_event(struct dconn *d, uint32_t ev) {
  if (d->closed) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (d->closing) {
      // Reads are disabled while flushing; a peer close ends the connection.
      if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) dconn_raise_close(d, EV_REMOTE_CLOSE, false);
    } else {
      dconn_on_readable(d);
    }
  }
  if (!d->closed && (ev & EPOLLOUT)) dconn_flush(d);
}

static void dconn_accept(struct worker *w, struct listener *l, int fd,
                         const struct sockaddr_storage *peer) {
  struct dconn *d = xcalloc(sizeof *d);
  d->src.kind = SRC_DCONN;
  atomic_init(&d->refs, 1);
  d->w = w;
  d->l = l;
  d->fd = fd;
  pthread_mutex_init(&d->mu, NULL);
  struct sockaddr_storage local;
  socklen_t ll = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0) format_addr(&local, d->local, sizeof d->local);
  format_addr(peer, d->remote, sizeof d->remote);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct fwrapper *fw = xcalloc(sizeof *fw);
  pthread_mutex_init(&fw->mu, NULL);
  fw->d = d;
  d->wrapper = fw;
  ep_ctl(w, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, &d->src);
  LOG(DEBUG, "downstream %s accepted on worker %d wrapper=%p", d->remote, w->idx, (void *)fw);
  dso.on_downstream_connection(fw, (GoUint64)(uintptr_t)l->plugin, strlen(l->plugin), l->config_id);
  // ServerConnectionImpl raises Connected right after initializeReadFilters,
  // whatever onNewConnection returned.
  dso.on_downstream_event(fw, EV_CONNECTED);
}

static void task_downstream_write(struct task *t) {
  struct dconn *d = t->obj;
  if (d->destroyed) {
    LOG(DEBUG, "downstream write: filter gone, %zu bytes dropped", t->len);
  } else if (d->closed) {
    LOG(WARN, "downstream %s: connection has closed, %zu bytes dropped", d->remote, t->len);
  } else {
    dconn_write(d, t->data, t->len, t->a != 0);
  }
  dconn_unref(d);
}

static void task_downstream_close(struct task *t) {
  struct dconn *d = t->obj;
  if (!d->destroyed) dconn_close(d, t->a);
  dconn_unref(d);
}

static void task_downstream_finalize(struct task *t) {
  struct fwrapper *fw = t->ptr;
  struct dconn *d = t->obj;
  if (d->wrapper == fw) d->wrapper = NULL;
  // The filter may be destroyed meanwhile; it no longer touches fw either way.
  pthread_mutex_destroy(&fw->mu);
  free(fw->str_value);
  free(fw);
  LOG(DEBUG, "downstream finalize wrapper=%p posted", t->ptr);
  dconn_unref(d);
}

static void task_set_filter_state(struct task *t) {
  struct dconn *d = t->obj;
  if (!d->destroyed && !d->closed) {
    pthread_mutex_lock(&d->mu);
    fs_set(&d->fs, t->data, (size_t)t->c, t->data + t->c, t->len - (size_t)t->c, t->a, t->b,
           (int)(intptr_t)t->ptr);
    pthread_mutex_unlock(&d->mu);
  } else {
    LOG(INFO, "golang filter has gone or destroyed in setStringFilterState");
  }
  dconn_unref(d);
}

static void task_get_filter_state(struct task *t) {
  struct dconn *d = t->obj;
  if (!d->destroyed && !d->closed) {
    const struct fsentry *e = fs_get(d->fs, t->data, t->len);
    if (e) anchor_string(&d->wrapper->str_value, e->value, e->value_len, (GoString *)t->ptr);
    dso.on_sema_dec(d->wrapper);
  } else {
    LOG(INFO, "golang filter has gone or destroyed in getStringFilterState; waiter not released");
  }
  dconn_unref(d);
}

// ---------------------------------------------------------------- upstream

enum { U_INIT, U_CONNECTING, U_READY, U_DONE };

struct uconn;

// uwrapper is Envoy's UpstreamConnWrapper: a strong reference, freed only by
// Go's UpstreamFinalize.
struct uwrapper {
  struct uconn *u;
  char *str_value;
};

struct uconn {
  struct evsrc src;
  struct evsrc tsrc;
  atomic_int refs;
  struct worker *w;
  int fd, tfd;
  int state;
  bool closed;      // UpstreamConn::closed_
  bool closing;
  bool read_eof, write_end, want_out, flush_scheduled;
  atomic_bool half_close;
  char *addr;
  size_t addr_len;
  bool addr_ok;
  struct sockaddr_storage ss;
  socklen_t sslen;
  char remote[64];
  GoUint64 conn_id;
  struct obuf out;
  struct uwrapper *wrapper;
};

static void uconn_unref(struct uconn *u) {
  if (atomic_fetch_sub(&u->refs, 1) != 1) return;
  if (u->fd >= 0) close(u->fd);
  if (u->tfd >= 0) close(u->tfd);
  obuf_free(&u->out);
  free(u->addr);
  free(u);
}

static void uconn_release(void *obj) { uconn_unref(obj); }

static void uconn_stop_timer(struct uconn *u) {
  if (u->tfd >= 0) {
    close(u->tfd);
    u->tfd = -1;
  }
}

static void uconn_update_events(struct uconn *u) {
  if (u->fd < 0) return;
  uint32_t ev = EPOLLIN | EPOLLRDHUP;
  if (u->read_eof) ev = 0;
  else if (u->closing) ev = atomic_load(&u->half_close) ? 0 : EPOLLRDHUP;
  if (u->out.len > 0 || u->closing) ev |= EPOLLOUT;
  u->want_out = ev & EPOLLOUT;
  ep_ctl(u->w, EPOLL_CTL_MOD, u->fd, ev, &u->src);
}

static void uconn_raise_close(struct uconn *u, int event, bool reset) {
  if (u->closed) return;
  u->closed = true;
  u->state = U_DONE;
  if (u->fd >= 0) {
    if (reset) set_linger_reset(u->fd);
    close(u->fd);
    u->fd = -1;
  }
  obuf_free(&u->out);
  LOG(DEBUG, "upstream %s close event %d", u->addr, event);
  // The TCP pool forwards only LocalClose and RemoteClose.
  if (u->wrapper) dso.on_upstream_event(u->wrapper, event);
  defer_call(u->w, uconn_release, u);  // the socket's reference
}

static void uconn_fail(struct uconn *u, int reason, const char *why) {
  LOG(ERROR, "onPoolFailure, addr: %s, reason: %d, %s", u->addr, reason, why);
  uconn_stop_timer(u);
  bool had_socket = u->fd >= 0;
  if (had_socket) {
    close(u->fd);
    u->fd = -1;
  }
  u->state = U_DONE;
  if (u->wrapper) dso.on_upstream_failure(u->wrapper, reason, u->conn_id);
  if (had_socket) defer_call(u->w, uconn_release, u);
}

static void uconn_flush(struct uconn *u) {
  switch (obuf_send(&u->out, u->fd)) {
  case SEND_DONE:
    break;
  case SEND_AGAIN:
    if (!u->want_out) uconn_update_events(u);
    return;
  case SEND_FAILED:
    uconn_raise_close(u, EV_REMOTE_CLOSE, false);
    return;
  }
  if (u->write_end) {
    shutdown(u->fd, SHUT_WR);
    if (u->read_eof) {  // both directions closed by our write: onWriteReady's LocalClose
      uconn_raise_close(u, EV_LOCAL_CLOSE, false);
      return;
    }
  }
  if (u->closing) {
    uconn_raise_close(u, EV_LOCAL_CLOSE, false);
    return;
  }
  if (u->want_out) uconn_update_events(u);
}

static void uconn_ready(struct uconn *u) {
  uconn_stop_timer(u);
  u->state = U_READY;
  struct sockaddr_storage peer;
  socklen_t pl = sizeof peer;
  if (getpeername(u->fd, (struct sockaddr *)&peer, &pl) == 0) format_addr(&peer, u->remote, sizeof u->remote);
  uconn_update_events(u);
  LOG(DEBUG, "upstream %s ready on worker %d wrapper=%p", u->addr, u->w->idx, (void *)u->wrapper);
  if (u->wrapper) dso.on_upstream_ready(u->wrapper, u->conn_id);
}

static void uconn_on_readable(struct uconn *u) {
  if (u->closed || u->closing || u->read_eof) return;
  struct worker *w = u->w;
  size_t total;
  bool eof;
  int err;
  int ns = read_all(w, u->fd, &total, &eof, &err);
  bool half = atomic_load(&u->half_close);
  if (err) {
    if (total > 0) dso.on_upstream_data(u->wrapper, total, (GoUint64)(uintptr_t)w->slices, ns, 0);
    if (!u->closed) uconn_raise_close(u, EV_REMOTE_CLOSE, false);
    return;
  }
  if (eof && half) {
    // With half-close enabled the FIN is end_stream on the data callback and
    // the connection stays writable until both sides are closed.
    u->read_eof = true;
    dso.on_upstream_data(u->wrapper, total, (GoUint64)(uintptr_t)w->slices, ns, 1);
    if (u->closed) return;
    if (u->write_end && u->out.len == 0) {
      uconn_raise_close(u, EV_REMOTE_CLOSE, false);
      return;
    }
    uconn_update_events(u);
    return;
  }
  if (total > 0) dso.on_upstream_data(u->wrapper, total, (GoUint64)(uintptr_t)w->slices, ns, 0);
  if (eof && !u->closed) uconn_raise_close(u, EV_REMOTE_CLOSE, false);
}

static void uconn_on_event(struct uconn *u, uint32_t ev) {
  if (u->state == U_CONNECTING) {
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr == 0 && (ev & EPOLLOUT)) {
      uconn_ready(u);
    } else if (soerr != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
      uconn_fail(u, POOL_REMOTE_CONNECTION_FAILURE, soerr ? strerror(soerr) : "connection error");
    }
    return;
  }
  if (u->state != U_READY || u->closed) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (u->closing || u->read_eof) {
      bool peer_closed = (ev & (EPOLLHUP | EPOLLERR)) ||
                         ((ev & EPOLLRDHUP) && u->closing && !u->read_eof && !atomic_load(&u->half_close));
      if (peer_closed) uconn_raise_close(u, EV_REMOTE_CLOSE, false);
    } else {
      uconn_on_readable(u);
    }
  }
  if (!u->closed && (ev & EPOLLOUT)) uconn_flush(u);
}

static void uconn_on_timer(struct uconn *u) {
  uint64_t exp;
  (void)!read(u->tfd, &exp, sizeof exp);
  if (u->state == U_CONNECTING) uconn_fail(u, POOL_TIMEOUT, "connect timeout");
}

static void task_upstream_connect(struct task *t) {
  struct uconn *u = t->obj;
  if (!u->addr_ok) {
    // Envoy throws "malformed IP address" from envoyGoFilterUpstreamConnect and
    // crashes; the fixture reports a local failure instead so tests can go on.
    LOG(ERROR, "malformed IP address: %s (Envoy v1.36 would crash here)", u->addr);
    uconn_fail(u, POOL_LOCAL_CONNECTION_FAILURE, "malformed IP address");
    uconn_unref(u);
    return;
  }
  int fd = socket(u->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    uconn_fail(u, POOL_LOCAL_CONNECTION_FAILURE, strerror(errno));
    uconn_unref(u);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  u->fd = fd;
  atomic_fetch_add(&u->refs, 1);  // the socket's reference, dropped after close
  ep_ctl(u->w, EPOLL_CTL_ADD, fd, EPOLLOUT, &u->src);
  int r = connect(fd, (struct sockaddr *)&u->ss, u->sslen);
  if (r == 0) {
    uconn_ready(u);
  } else if (errno == EINPROGRESS) {
    u->state = U_CONNECTING;
    u->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (u->tfd >= 0) {
      struct itimerspec its = {.it_value = {.tv_sec = connect_timeout_ms / 1000,
                                            .tv_nsec = (long)(connect_timeout_ms % 1000) * 1000000}};
      timerfd_settime(u->tfd, 0, &its, NULL);
      ep_ctl(u->w, EPOLL_CTL_ADD, u->tfd, EPOLLIN, &u->tsrc);
    }
  } else {
    uconn_fail(u, POOL_REMOTE_CONNECTION_FAILURE, strerror(errno));
  }
  uconn_unref(u);
}

static void uconn_flush_deferred(void *obj) {
  struct uconn *u = obj;
  u->flush_scheduled = false;
  if (!u->closed && u->fd >= 0 && u->state == U_READY) uconn_flush(u);
  uconn_unref(u);
}

static void task_upstream_write(struct task *t) {
  struct uconn *u = t->obj;
  if (u->closed) {
    LOG(WARN, "upstream %s: connection has closed, %zu bytes dropped", u->addr, t->len);
  } else if (u->state != U_READY) {
    LOG(ERROR, "upstream %s: write before pool ready (Envoy v1.36 would crash here); dropped", u->addr);
  } else if (u->write_end) {
    LOG(DEBUG, "upstream %s: write after end_stream dropped", u->addr);
  } else {
    obuf_append(&u->out, t->data, t->len);
    if (t->a) u->write_end = true;
    if (!u->flush_scheduled) {  // one socket write per loop iteration
      u->flush_scheduled = true;
      atomic_fetch_add(&u->refs, 1);
      defer_call(u->w, uconn_flush_deferred, u);
    }
  }
  uconn_unref(u);
}

static void task_upstream_close(struct task *t) {
  struct uconn *u = t->obj;
  int type = t->a;
  if (u->closed) {
    LOG(WARN, "upstream %s: connection has closed", u->addr);
  } else if (u->state != U_READY) {
    LOG(ERROR, "upstream %s: close before pool ready (Envoy v1.36 would crash here); ignored", u->addr);
  } else if (type == CLOSE_FLUSH_WRITE || type == CLOSE_FLUSH_WRITE_AND_DELAY) {
    if (u->out.len == 0) {
      uconn_raise_close(u, EV_LOCAL_CLOSE, false);
    } else {
      u->closing = true;
      uconn_update_events(u);
    }
  } else {
    if (type == CLOSE_NO_FLUSH && u->out.len > 0)
      (void)!send(u->fd, u->out.data + u->out.off, u->out.len, MSG_NOSIGNAL);
    uconn_raise_close(u, EV_LOCAL_CLOSE, type == CLOSE_ABORT_RESET);
  }
  uconn_unref(u);
}

static void task_upstream_finalize(struct task *t) {
  struct uwrapper *uw = t->ptr;
  struct uconn *u = uw->u;
  u->wrapper = NULL;
  if (!u->closed && u->fd >= 0 && u->state == U_READY) {
    // Go only finalizes after a close event; close quietly if it did not.
    uconn_raise_close(u, EV_LOCAL_CLOSE, false);
  }
  LOG(DEBUG, "upstream finalize wrapper=%p", (void *)uw);
  free(uw->str_value);
  free(uw);
  uconn_unref(u);  // the wrapper's strong reference
}

// ---------------------------------------------------------------- exported host API

#define EXPORT __attribute__((visibility("default")))

static bool on_worker(struct worker *w) { return current_worker == w; }

EXPORT int envoyGoFilterDownstreamWrite(void *f, void *buffer_ptr, int buffer_len, int end_stream) {
  struct dconn *d = dconn_lock(f);
  if (!d) return CAPIFilterIsGone;
  // Copy now: the bytes live in Go's heap and may be reused once we return.
  struct task *t = new_task(task_downstream_write, d, buffer_ptr, buffer_len > 0 ? (size_t)buffer_len : 0);
  t->a = end_stream;
  post(d->w, t);  // always posted, even on the worker itself
  return CAPIOK;
}

EXPORT int envoyGoFilterDownstreamClose(void *wrapper, int close_type) {
  struct dconn *d = dconn_lock(wrapper);
  if (!d) return CAPIFilterIsGone;
  struct task *t = new_task(task_downstream_close, d, NULL, 0);
  t->a = close_type;
  post(d->w, t);
  return CAPIOK;
}

EXPORT void envoyGoFilterDownstreamFinalize(void *wrapper, int reason) {
  (void)reason;  // Envoy ignores it
  struct fwrapper *fw = wrapper;
  struct dconn *d = dconn_lock(fw);
  if (d) {
    struct task *t = new_task(task_downstream_finalize, d, NULL, 0);
    t->ptr = fw;
    post(d->w, t);
    return;
  }
  // The filter is gone: delete on the calling (Go finalizer) thread.
  LOG(DEBUG, "downstream finalize wrapper=%p inline", wrapper);
  pthread_mutex_destroy(&fw->mu);
  free(fw->str_value);
  free(fw);
}

EXPORT int envoyGoFilterDownstreamInfo(void *wrapper, int t, void *ret) {
  struct fwrapper *fw = wrapper;
  struct dconn *d = dconn_lock(fw);
  if (!d) return CAPIFilterIsGone;
  const char *s;
  if (t == 0) {
    s = d->local;
  } else if (t == 1) {
    s = d->remote;
  } else {
    LOG(ERROR, "DownstreamInfo: info type %d is a corrupt enum (Envoy panics)", t);
    abort();
  }
  anchor_string(&fw->str_value, s, strlen(s), ret);
  dconn_unref(d);
  return CAPIOK;
}

EXPORT int envoyGoFilterSetFilterState(void *wrapper, void *key, void *value, int state_type,
                                       int life_span, int stream_sharing) {
  struct dconn *d = dconn_lock(wrapper);
  if (!d) return CAPIFilterIsGone;
  const GoString *k = key, *v = value;
  int rc = CAPIOK;
  pthread_mutex_lock(&d->mu);
  if (d->closed) {
    LOG(WARN, "downstream %s: connection has closed", d->remote);
    rc = CAPIFilterIsDestroy;
  } else if (on_worker(d->w)) {
    fs_set(&d->fs, k->p, (size_t)k->n, v->p, (size_t)v->n, state_type, life_span, stream_sharing);
  } else {
    // Copy key and value: both are Go memory.
    size_t kl = (size_t)k->n, vl = (size_t)v->n;
    struct task *t = new_task(task_set_filter_state, d, NULL, kl + vl);
    memcpy(t->data, k->p, kl);
    memcpy(t->data + kl, v->p, vl);
    t->c = (int)kl;
    t->a = state_type;
    t->b = life_span;
    t->ptr = (void *)(intptr_t)stream_sharing;
    atomic_fetch_add(&d->refs, 1);
    post(d->w, t);
  }
  pthread_mutex_unlock(&d->mu);
  dconn_unref(d);
  return rc;
}

EXPORT int envoyGoFilterGetFilterState(void *wrapper, void *key, void *value) {
  struct fwrapper *fw = wrapper;
  struct dconn *d = dconn_lock(fw);
  if (!d) return CAPIFilterIsGone;
  const GoString *k = key;
  int rc = CAPIOK;
  pthread_mutex_lock(&d->mu);
  if (d->closed) {
    LOG(WARN, "downstream %s: connection has closed", d->remote);
    rc = CAPIFilterIsDestroy;
  } else if (on_worker(d->w)) {
    const struct fsentry *e = fs_get(d->fs, k->p, (size_t)k->n);
    if (e) anchor_string(&fw->str_value, e->value, e->value_len, value);
  } else {
    // Off the worker: look up on the worker, then release Go's waiter with
    // OnSemaDec. value stays Go's until then.
    struct task *t = new_task(task_get_filter_state, d, k->p, (size_t)k->n);
    t->ptr = value;
    atomic_fetch_add(&d->refs, 1);
    post(d->w, t);
    rc = CAPIYield;
  }
  pthread_mutex_unlock(&d->mu);
  dconn_unref(d);
  return rc;
}

EXPORT void *envoyGoFilterUpstreamConnect(void *library_id_ptr, void *addr_ptr, uint64_t conn_id) {
  const GoString *lib = library_id_ptr, *addr = addr_ptr;
  if ((size_t)lib->n != strlen(library_id) || memcmp(lib->p, library_id, (size_t)lib->n) != 0)
    LOG(ERROR, "UpstreamConnect: unknown library id %.*s (Envoy would find no DSO)", (int)lib->n, lib->p);
  struct uconn *u = xcalloc(sizeof *u);
  u->src.kind = SRC_UCONN;
  u->tsrc.kind = SRC_UTIMER;
  atomic_init(&u->refs, 2);  // the wrapper's reference and the posted connect's
  u->fd = -1;
  u->tfd = -1;
  u->conn_id = conn_id;
  u->addr = xstrndup(addr->p, (size_t)addr->n);
  u->addr_len = (size_t)addr->n;
  u->addr_ok = parse_ip_port(u->addr, u->addr_len, &u->ss, &u->sslen);
  unsigned idx = atomic_fetch_add(&upstream_rr, 1);
  u->w = &workers[idx % (unsigned)nworkers];
  struct uwrapper *uw = xcalloc(sizeof *uw);
  uw->u = u;
  u->wrapper = uw;
  post(u->w, new_task(task_upstream_connect, u, NULL, 0));
  return uw;
}

EXPORT int envoyGoFilterUpstreamConnEnableHalfClose(void *wrapper, int enable) {
  struct uconn *u = ((struct uwrapper *)wrapper)->u;
  // Not posted, as in Envoy: only meaningful on the upstream's worker.
  if (u->closed) {
    LOG(WARN, "upstream %s: connection has closed", u->addr);
  } else if (u->state != U_READY) {
    LOG(ERROR, "upstream %s: EnableHalfClose before pool ready (Envoy v1.36 would crash here)", u->addr);
  } else {
    if (!on_worker(u->w))
      LOG(WARN, "upstream %s: EnableHalfClose off the upstream's worker is not thread-safe in Envoy", u->addr);
    atomic_store(&u->half_close, enable != 0);
  }
  return CAPIOK;
}

EXPORT int envoyGoFilterUpstreamWrite(void *wrapper, void *buffer_ptr, int buffer_len, int end_stream) {
  struct uconn *u = ((struct uwrapper *)wrapper)->u;
  struct task *t = new_task(task_upstream_write, u, buffer_ptr, buffer_len > 0 ? (size_t)buffer_len : 0);
  t->a = end_stream;
  atomic_fetch_add(&u->refs, 1);
  post(u->w, t);
  return CAPIOK;
}

EXPORT int envoyGoFilterUpstreamClose(void *wrapper, int close_type) {
  struct uconn *u = ((struct uwrapper *)wrapper)->u;
  struct task *t = new_task(task_upstream_close, u, NULL, 0);
  t->a = close_type;
  atomic_fetch_add(&u->refs, 1);
  post(u->w, t);
  return CAPIOK;
}

EXPORT void envoyGoFilterUpstreamFinalize(void *wrapper, int reason) {
  (void)reason;
  struct uconn *u = ((struct uwrapper *)wrapper)->u;
  struct task *t = new_task(task_upstream_finalize, u, NULL, 0);
  t->ptr = wrapper;
  post(u->w, t);
}

EXPORT int envoyGoFilterUpstreamInfo(void *wrapper, int t, void *ret) {
  struct uwrapper *uw = wrapper;
  struct uconn *u = uw->u;
  if (t == 0) {
    anchor_string(&uw->str_value, u->addr, u->addr_len, ret);  // the dial target as Go gave it
  } else if (t == 1) {
    anchor_string(&uw->str_value, u->remote, strlen(u->remote), ret);  // empty before ready
  } else {
    LOG(ERROR, "UpstreamInfo: info type %d is a corrupt enum (Envoy panics)", t);
    abort();
  }
  return CAPIOK;
}

// Only plugins that import contrib/golang/common/go/api_impl use these.
EXPORT void envoyGoFilterLog(uint32_t level, void *message_data, int message_len) {
  if (level == 6) return;  // off
  if (level > 6) {
    LOG(ERROR, "envoyGoFilterLog: unknown level %u (Envoy panics)", level);
    abort();
  }
  int l = level >= 5 ? LOG_ERROR : (int)level;
  logf_(l, "[go] %.*s", message_len, (const char *)message_data);
}

EXPORT uint32_t envoyGoFilterLogLevel(void) { return (uint32_t)log_level; }

// ---------------------------------------------------------------- worker loop

static void run_tasks(struct worker *w) {
  pthread_mutex_lock(&w->mu);
  struct task *t = w->head;
  w->head = w->tail = NULL;
  pthread_mutex_unlock(&w->mu);
  while (t) {
    struct task *next = t->next;
    t->fn(t);
    free(t);
    t = next;
  }
}

static void run_deferred(struct worker *w) {
  // Deferred calls may defer more; run until none are left.
  while (w->ndeferred > 0) {
    size_t n = w->ndeferred;
    struct deferred batch[64];
    size_t take = n < 64 ? n : 64;
    memcpy(batch, w->deferred + n - take, take * sizeof *batch);
    w->ndeferred -= take;
    for (size_t i = 0; i < take; i++) batch[i].fn(batch[i].obj);
  }
}

static void on_accept(struct worker *w, struct lsock *ls) {
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    int fd = accept4(ls->fd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        LOG(WARN, "accept on %s: %s", ls->l->addr, strerror(errno));
      return;
    }
    dconn_accept(w, ls->l, fd, &peer);
  }
}

static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;
static int started;

static void *worker_main(void *arg) {
  struct worker *w = arg;
  current_worker = w;
  w->tid = (pid_t)syscall(SYS_gettid);
  pthread_mutex_lock(&start_mu);
  started++;
  pthread_cond_broadcast(&start_cv);
  pthread_mutex_unlock(&start_mu);
  struct epoll_event evs[256];
  while (!atomic_load(&w->stop)) {
    pthread_mutex_lock(&w->mu);
    int timeout = w->head ? 0 : -1;  // tasks this worker posted to itself
    pthread_mutex_unlock(&w->mu);
    int n = epoll_wait(w->epfd, evs, 256, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
      struct evsrc *src = evs[i].data.ptr;
      switch (src->kind) {
      case SRC_WAKE: {
        uint64_t v;
        (void)!read(w->evfd, &v, sizeof v);
        break;
      }
      case SRC_LISTENER:
        on_accept(w, (struct lsock *)src);
        break;
      case SRC_DCONN:
        dconn_on_event((struct dconn *)src, evs[i].events);
        break;
      case SRC_UCONN:
        uconn_on_event((struct uconn *)src, evs[i].events);
        break;
      case SRC_UTIMER:
        uconn_on_timer((struct uconn *)((char *)src - offsetof(struct uconn, tsrc)));
        break;
      }
    }
    run_deferred(w);
    run_tasks(w);
    run_deferred(w);
  }
  return NULL;
}

static void task_stop(struct task *t) { atomic_store(&((struct worker *)t->obj)->stop, true); }

// ---------------------------------------------------------------- startup

static void ensure_godebug(char **argv) {
  // A c-shared Go runtime reads the environment the process started with, so
  // setenv before dlopen is too late: re-exec once with cgocheck=0 set.
  const char *g = getenv("GODEBUG");
  if (g && strstr(g, "cgocheck=0")) return;
  if (getenv("ABIHOST_REEXEC")) die("GODEBUG=cgocheck=0 is not in effect after re-exec");
  char *v;
  if (g && *g) {
    v = xmalloc(strlen(g) + 16);
    sprintf(v, "%s,cgocheck=0", g);
  } else {
    v = "cgocheck=0";
  }
  setenv("GODEBUG", v, 1);
  setenv("ABIHOST_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  die("re-exec with GODEBUG=cgocheck=0: %s", strerror(errno));
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) die("config file %s: %s", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = xmalloc(cap);
  for (;;) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (n < cap) break;
    cap *= 2;
    buf = realloc(buf, cap);
    if (!buf) die("out of memory");
  }
  if (ferror(f)) die("config file %s: read error", path);
  fclose(f);
  *len = n;
  return buf;
}

static void load_library(const char *path) {
  void *h = dlopen(path, RTLD_LAZY);
  if (!h) die("cannot load : %s error: %s", path, dlerror());
  for (size_t i = 0; i < sizeof dso_symbols / sizeof dso_symbols[0]; i++) {
    dlerror();
    void *sym = dlsym(h, dso_symbols[i].name);
    if (!sym) {
      const char *e = dlerror();
      die("lib: %s, cannot find symbol: %s, err: %s", path, dso_symbols[i].name, e ? e : "null symbol");
    }
    memcpy((char *)&dso + dso_symbols[i].offset, &sym, sizeof sym);
  }
  // Never dlclose: a Go runtime cannot be unloaded.
}

static int listen_socket(struct listener *l, struct sockaddr_storage *ss, socklen_t len) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // One socket per worker, as Envoy does with reuse_port on Linux.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)ss, len) < 0) die("bind %s: %s", l->addr, strerror(errno));
  if (listen(fd, 1024) < 0) die("listen %s: %s", l->addr, strerror(errno));
  return fd;
}

static _Noreturn void usage(void) {
  die("usage: abihost --library PATH [--library-id ID] [--workers N] [--connect-timeout-ms MS]\n"
      "       [--log-level LEVEL] [--plugin NAME] --listen IP:PORT [--plugin NAME]\n"
      "       [--config-file FILE] [--listen ...]");
}

int main(int argc, char **argv) {
  ensure_godebug(argv);
  const char *library = NULL;
  const char *default_plugin = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (strcmp(a, "--library") == 0) {
      library = v;
    } else if (strcmp(a, "--library-id") == 0) {
      if (!*v) die("--library-id: value length must be at least 1 characters");
      library_id = (char *)v;
    } else if (strcmp(a, "--workers") == 0) {
      nworkers = atoi(v);
      if (nworkers < 1 || nworkers > 64) die("--workers must be 1..64");
    } else if (strcmp(a, "--connect-timeout-ms") == 0) {
      connect_timeout_ms = atoi(v);
      if (connect_timeout_ms < 1) die("--connect-timeout-ms must be positive");
    } else if (strcmp(a, "--log-level") == 0) {
      int l = -1;
      for (int k = 0; k <= LOG_ERROR; k++)
        if (strcmp(v, level_names[k]) == 0) l = k;
      if (l < 0) die("--log-level: unknown level %s", v);
      log_level = l;
    } else if (strcmp(a, "--plugin") == 0) {
      if (!*v) die("--plugin: value length must be at least 1 characters");
      if (nlisteners == 0) default_plugin = v;
      else listeners[nlisteners - 1].plugin = (char *)v;
    } else if (strcmp(a, "--listen") == 0) {
      listeners = realloc(listeners, (size_t)(nlisteners + 1) * sizeof *listeners);
      if (!listeners) die("out of memory");
      struct listener *l = &listeners[nlisteners++];
      memset(l, 0, sizeof *l);
      l->addr = (char *)v;
      l->plugin = (char *)default_plugin;
      if (!parse_ip_port(v, strlen(v), &l->ss, &l->sslen)) die("--listen %s: want IP:PORT", v);
    } else if (strcmp(a, "--config-file") == 0) {
      if (nlisteners == 0) die("--config-file must follow a --listen");
      listeners[nlisteners - 1].config = read_file(v, &listeners[nlisteners - 1].config_len);
    } else {
      usage();
    }
  }
  if (!library || nlisteners == 0) usage();
  for (int i = 0; i < nlisteners; i++)
    if (!listeners[i].plugin) die("listener %s has no --plugin", listeners[i].addr);

  // Workers and the main thread handle no asynchronous signals; main waits
  // for them with sigwait. Blocked before dlopen so Go's threads inherit it.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  load_library(library);
  for (int i = 0; i < nlisteners; i++) {
    struct listener *l = &listeners[i];
    // Envoy serializes the google.protobuf.Any itself; pointers are valid
    // only during the call.
    l->config_id = dso.on_config((GoUint64)(uintptr_t)library_id, strlen(library_id),
                                 (GoUint64)(uintptr_t)(l->config ? l->config : ""), l->config_len);
    if (l->config_id == 0) die("envoyGoFilterOnNetworkFilterConfig returned 0 for listener %s", l->addr);
    LOG(DEBUG, "listener %s plugin %s config_id %llu", l->addr, l->plugin, l->config_id);
  }

  workers = xcalloc((size_t)nworkers * sizeof *workers);
  for (int i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];
    w->idx = i;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->evfd < 0) die("epoll/eventfd: %s", strerror(errno));
    w->wake.kind = SRC_WAKE;
    pthread_mutex_init(&w->mu, NULL);
    w->rbuf = xmalloc((size_t)MAX_SLICES * SLICE_SIZE);
    w->lsocks = xcalloc((size_t)nlisteners * sizeof *w->lsocks);
    ep_ctl(w, EPOLL_CTL_ADD, w->evfd, EPOLLIN, &w->wake);
  }
  for (int li = 0; li < nlisteners; li++) {
    struct listener *l = &listeners[li];
    struct sockaddr_storage ss = l->ss;
    socklen_t len = l->sslen;
    for (int i = 0; i < nworkers; i++) {
      struct lsock *ls = &workers[i].lsocks[li];
      ls->src.kind = SRC_LISTENER;
      ls->l = l;
      ls->fd = listen_socket(l, &ss, len);
      if (i == 0) {  // port 0: the other workers bind the port the first got
        len = sizeof ss;
        getsockname(ls->fd, (struct sockaddr *)&ss, &len);
        l->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                : ((struct sockaddr_in6 *)&ss)->sin6_port);
      }
      ep_ctl(&workers[i], EPOLL_CTL_ADD, ls->fd, EPOLLIN, &ls->src);
    }
  }
  for (int i = 0; i < nworkers; i++)
    if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) die("pthread_create failed");
  pthread_mutex_lock(&start_mu);
  while (started < nworkers) pthread_cond_wait(&start_cv, &start_mu);
  pthread_mutex_unlock(&start_mu);

  printf("ready listeners=");
  for (int i = 0; i < nlisteners; i++) {
    char a[64];
    struct sockaddr_storage ss = listeners[i].ss;
    if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)listeners[i].port);
    else ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)listeners[i].port);
    format_addr(&ss, a, sizeof a);
    printf("%s%s", i ? "," : "", a);
  }
  printf(" workers=");
  for (int i = 0; i < nworkers; i++) printf("%s%d", i ? "," : "", (int)workers[i].tid);
  printf("\n");
  fflush(stdout);

  int sig = 0;
  while (sigwait(&sigs, &sig) != 0) {
  }
  LOG(INFO, "signal %d: shutting down", sig);
  for (int i = 0; i < nworkers; i++) post(&workers[i], new_task(task_stop, &workers[i], NULL, 0));
  for (int i = 0; i < nworkers; i++) pthread_join(workers[i].thread, NULL);
  // Connections still open are dropped with the process; Go is not called.
  fflush(stderr);
  _exit(0);
}
