/*
 * The open-loop HTTP/1.1 load generator of bench_serving.py, in C (see _loadgen.py, which
 * compiles it with the system's cc and reads what it writes; the Python generator stays as
 * the fallback with the same semantics).
 *
 * Why C: at 1,000 requests/s the asyncio generator used a quarter of one of the machine's two
 * cores and released requests up to 3-4 ms after their due time (p99), most of DESIGN.md's
 * 5 ms budget, measured as the server's latency. This one sleeps on a timerfd until each
 * request is due and costs a few percent of a core.
 *
 * Semantics (identical to _loadgen.run_phase): request i is due at t0 + i * 1e9 / rate ns
 * (CLOCK_MONOTONIC, Python's perf_counter_ns), released to a FIFO at that time, sent on the
 * first idle keep-alive connection, and its latency runs from its due time to the last byte
 * of its response. A request waiting for a connection more than max_lag late marks the phase
 * saturated: the waiting and the remaining requests are not sent (outcome 0).
 *
 * usage: loadgen HOST PORT REQUESTS OUT RATE N_WARM CONNECTIONS TIMEOUT_S MAX_LAG_S T0_NS [FLAG]
 *   REQUESTS: for each request a little-endian uint32 length, then the request bytes
 *   OUT: int64 n, saturated, cpu_ns, wall_end_ns; int64 due[n], released[n], sent[n],
 *        done[n]; int32 outcome[n]; uint8 flagged[n]. OUT.errors: for the first response of
 *        each non-200 status, int32 status, int32 length, body bytes (at most 500).
 *   outcome: HTTP status, 0 unsent, -1 timeout, -2 connection error, -3 bad response
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { UNSENT = 0, TIMEOUT = -1, CONN_ERROR = -2, BAD_RESPONSE = -3 };

typedef struct {
    int fd;
    long req;            /* request in flight, -1 when idle */
    size_t woff;         /* bytes of it written */
    char *buf;           /* response bytes read so far */
    size_t len, cap;
} conn_t;

static const char *host, *port;
static char **req_data;
static uint32_t *req_len;
static long n;
static int64_t *due, *released, *sent, *done_at;
static int32_t *outcome;
static uint8_t *flagged;
static const char *flag;
static size_t flag_len;
static int epfd;
static FILE *errors_out;
static int seen_status[1000];
/* idle connections, longest idle first: requests go round the pool as asyncio's queue
   getters do (always the first idle one put all the load of a light rate on one connection,
   hence on one SO_REUSEPORT worker of the server) */
static conn_t **idle;
static int idle_head, idle_count, n_conns;

static void make_idle(conn_t *c) { idle[(idle_head + idle_count++) % n_conns] = c; }

static conn_t *take_idle(void) {
    conn_t *c = idle[idle_head];
    idle_head = (idle_head + 1) % n_conns;
    idle_count--;
    return c;
}

static void die(const char *what) { perror(what); exit(2); }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL
           + ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

/* A nonblocking socket whose connect has started (-1 on failure). */
static int dial_start(void) {
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Wait (up to 5 s) for connects started by dial_start; failed ones become -1. */
static void dial_finish(int *fds, int count) {
    struct pollfd *p = calloc(count, sizeof *p);
    int64_t deadline = now_ns() + 5000000000LL;
    for (int k = 0; k < count; k++) p[k] = (struct pollfd){.fd = fds[k], .events = POLLOUT};
    for (int left = count; left > 0 && now_ns() < deadline;) {
        if (poll(p, count, 100) < 0 && errno != EINTR) die("poll");
        left = 0;
        for (int k = 0; k < count; k++) {
            if (p[k].fd < 0) continue;
            if (!p[k].revents) { left++; continue; }
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(fds[k], SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) { close(fds[k]); fds[k] = -1; }
            p[k].fd = -1;
        }
    }
    for (int k = 0; k < count; k++) {
        if (p[k].fd >= 0) { close(fds[k]); fds[k] = -1; }   /* timed out */
        int one = 1;
        if (fds[k] >= 0) setsockopt(fds[k], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    free(p);
}

/* One connection, opened at once (a reconnection). */
static int dial(void) {
    int fd = dial_start();
    if (fd >= 0) dial_finish(&fd, 1);
    return fd;
}

static void drop(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->req = -1;
    c->len = 0;
}

static void finish(conn_t *c, int code, int keep) {
    done_at[c->req] = now_ns();
    outcome[c->req] = code;
    c->req = -1;
    c->len = 0;
    if (!keep) drop(c);
    make_idle(c);
}

static void watch(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) die("epoll_ctl mod");
}

static void write_some(conn_t *c) {
    long i = c->req;
    while (c->woff < req_len[i]) {
        ssize_t k = write(c->fd, req_data[i] + c->woff, req_len[i] - c->woff);
        if (k > 0) { c->woff += (size_t)k; continue; }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { watch(c, EPOLLIN | EPOLLOUT); return; }
        finish(c, CONN_ERROR, 0);
        return;
    }
    watch(c, EPOLLIN);
}

static void start(conn_t *c, long i) {
    c->req = i;
    c->woff = 0;
    c->len = 0;
    if (c->fd < 0) {
        c->fd = dial();
        if (c->fd < 0) { sent[i] = now_ns(); finish(c, CONN_ERROR, 0); return; }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl add");
    }
    sent[i] = now_ns();
    write_some(c);
}

/* the value of header `name` (with its colon, lower case) in head[0:end), or NULL */
static const char *header(const char *head, size_t end, const char *name) {
    size_t k = strlen(name);
    for (const char *p = head; p + k + 2 <= head + end; p++) {
        if (p[0] == '\r' && p[1] == '\n' && strncasecmp(p + 2, name, k) == 0) {
            p += 2 + k;
            while (*p == ' ') p++;
            return p;
        }
    }
    return NULL;
}

/* 1: a whole response was handled; 0: more bytes needed */
static int try_parse(conn_t *c) {
    char *b = c->buf;
    char *eoh = memmem(b, c->len, "\r\n\r\n", 4);
    if (!eoh) return 0;
    size_t head_len = (size_t)(eoh - b) + 4;
    if (c->len < 12 || strncmp(b, "HTTP/1.", 7) != 0) { finish(c, BAD_RESPONSE, 0); return 1; }
    int status = atoi(b + 9);
    const char *cl = header(b, head_len - 2, "content-length:");
    const char *body;
    size_t body_len, total;
    char *decoded = NULL;
    if (cl) {
        body_len = strtoul(cl, NULL, 10);
        total = head_len + body_len;
        if (c->len < total) return 0;
        body = b + head_len;
    } else {
        const char *te = header(b, head_len - 2, "transfer-encoding:");
        if (!te || strncasecmp(te, "chunked", 7) != 0) { finish(c, BAD_RESPONSE, 0); return 1; }
        size_t pos = head_len, out = 0;
        decoded = malloc(c->len + 1);
        for (;;) {
            char *line_end = memmem(b + pos, c->len - pos, "\r\n", 2);
            if (!line_end) { free(decoded); return 0; }
            size_t size = strtoul(b + pos, NULL, 16);
            size_t data = (size_t)(line_end - b) + 2;
            if (c->len < data + size + 2) { free(decoded); return 0; }
            if (size == 0) { total = data + 2; break; }
            memcpy(decoded + out, b + data, size);
            out += size;
            pos = data + size + 2;
        }
        body = decoded;
        body_len = out;
    }
    long i = c->req;
    if (status == 200 && flag_len && memmem(body, body_len, flag, flag_len)) flagged[i] = 1;
    if (status != 200 && status > 0 && status < 1000 && !seen_status[status]) {
        seen_status[status] = 1;
        int32_t hdr[2] = {status, (int32_t)(body_len < 500 ? body_len : 500)};
        fwrite(hdr, sizeof hdr, 1, errors_out);
        fwrite(body, 1, (size_t)hdr[1], errors_out);
    }
    const char *conn_hdr = header(b, head_len - 2, "connection:");
    int keep = !(conn_hdr && strncasecmp(conn_hdr, "close", 5) == 0) && c->len == total;
    free(decoded);
    finish(c, status, keep);
    return 1;
}

static void read_some(conn_t *c) {
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap = c->cap * 2 + 8192;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) die("realloc");
        }
        ssize_t k = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (k > 0) {
            c->len += (size_t)k;
            if (c->req < 0) { drop(c); return; }   /* bytes nobody asked for */
            if (try_parse(c)) return;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (c->req >= 0) finish(c, CONN_ERROR, 0); else drop(c);   /* closed or failed */
        return;
    }
}

static void load_requests(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    long cap = 1024;
    req_data = malloc(cap * sizeof *req_data);
    req_len = malloc(cap * sizeof *req_len);
    uint32_t len;
    while (fread(&len, 4, 1, f) == 1) {
        if (n == cap) {
            cap *= 2;
            req_data = realloc(req_data, cap * sizeof *req_data);
            req_len = realloc(req_len, cap * sizeof *req_len);
        }
        req_data[n] = malloc(len);
        if (fread(req_data[n], 1, len, f) != len) { fprintf(stderr, "%s: truncated\n", path); exit(2); }
        req_len[n++] = len;
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 11 || argc > 12) {
        fprintf(stderr, "usage: %s HOST PORT REQUESTS OUT RATE N_WARM CONNECTIONS TIMEOUT_S"
                        " MAX_LAG_S T0_NS [FLAG]\n", argv[0]);
        return 2;
    }
    host = argv[1];
    port = argv[2];
    load_requests(argv[3]);
    double rate = atof(argv[5]);
    int connections = n_conns = atoi(argv[7]);
    int64_t timeout_ns = (int64_t)(atof(argv[8]) * 1e9);
    int64_t max_lag_ns = (int64_t)(atof(argv[9]) * 1e9);
    int64_t t0 = atoll(argv[10]);
    flag = argc == 12 ? argv[11] : "";
    flag_len = strlen(flag);
    if (n == 0 || rate <= 0 || connections < 1) { fprintf(stderr, "nothing to send\n"); return 2; }

    due = calloc(n, 8); released = calloc(n, 8); sent = calloc(n, 8); done_at = calloc(n, 8);
    outcome = calloc(n, 4); flagged = calloc(n, 1);
    long *queue = malloc(n * sizeof *queue);
    double interval_ns = 1e9 / rate;
    for (long k = 0; k < n; k++) due[k] = t0 + (int64_t)(k * interval_ns);

    char errors_path[4096];
    snprintf(errors_path, sizeof errors_path, "%s.errors", argv[4]);
    errors_out = fopen(errors_path, "wb");
    if (!errors_out) die(errors_path);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev) != 0) die("epoll_ctl timer");

    /* all connections at once, as asyncio's gather does */
    conn_t *conns = calloc(connections, sizeof *conns);
    int *fds = malloc(connections * sizeof *fds);
    for (int k = 0; k < connections; k++) fds[k] = dial_start();
    dial_finish(fds, connections);
    idle = malloc(connections * sizeof *idle);
    for (int k = 0; k < connections; k++) {
        conns[k].req = -1;
        conns[k].fd = fds[k];
        make_idle(&conns[k]);
        if (conns[k].fd < 0) { fprintf(stderr, "cannot connect to %s:%s\n", host, port); return 3; }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[k]};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, conns[k].fd, &ev) != 0) die("epoll_ctl add");
    }

    int64_t cpu0 = cpu_ns();
    long next = 0, head = 0, tail = 0;   /* released: [0, next); queued: queue[head, tail) */
    int saturated = 0, armed_for = -1;
    struct epoll_event events[256];
    for (;;) {
        int64_t now = now_ns();
        if (!saturated) {
            while (next < n && due[next] <= now) { released[next] = now; queue[tail++] = next++; }
            if (head < tail && now - due[queue[head]] > max_lag_ns) saturated = 1;   /* shed */
        }
        if (saturated) head = tail;
        for (int k = 0; k < connections; k++) {
            conn_t *c = &conns[k];
            if (c->req >= 0 && now - sent[c->req] > timeout_ns) finish(c, TIMEOUT, 0);
        }
        while (idle_count > 0 && head < tail) start(take_idle(), queue[head++]);
        if (idle_count == connections && head == tail && (next == n || saturated)) break;
        int timeout_ms = 100;   /* request timeouts are checked at least this often */
        if (!saturated && next < n && armed_for != next) {
            struct itimerspec at = {0};
            at.it_value.tv_sec = due[next] / 1000000000LL;
            at.it_value.tv_nsec = due[next] % 1000000000LL;
            if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &at, NULL) != 0) die("timerfd_settime");
            armed_for = (int)next;
        }
        int k = epoll_wait(epfd, events, 256, timeout_ms);
        if (k < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < k; e++) {
            conn_t *c = events[e].data.ptr;
            if (c == NULL) { uint64_t ticks; (void)!read(tfd, &ticks, sizeof ticks); continue; }
            if (c->fd < 0) continue;
            if ((events[e].events & EPOLLOUT) && c->req >= 0) write_some(c);
            if (c->fd >= 0 && (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) read_some(c);
        }
    }
    int64_t spent = cpu_ns() - cpu0, end = now_ns();
    fclose(errors_out);

    FILE *out = fopen(argv[4], "wb");
    if (!out) die(argv[4]);
    int64_t head_fields[4] = {n, saturated, spent, end};
    fwrite(head_fields, 8, 4, out);
    fwrite(due, 8, n, out); fwrite(released, 8, n, out); fwrite(sent, 8, n, out);
    fwrite(done_at, 8, n, out); fwrite(outcome, 4, n, out); fwrite(flagged, 1, n, out);
    if (fclose(out) != 0) die(argv[4]);
    return 0;
}
