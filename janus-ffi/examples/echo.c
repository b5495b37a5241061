/*
 * A plain C client of the Janus gateway over the C ABI (janus.h): the program owns the TCP
 * socket and the clock, the library speaks the protocol. It runs the SDK conformance scenario
 * (janus-testkit's conformance module) and prints one line per step:
 *
 *   known answers, connect + handshake, echo, heartbeat, push, request failure.
 *
 * Build (after `cargo build -p janus-ffi`):
 *   gcc -std=c11 -Wall -Wextra -Ijanus-ffi/include janus-ffi/examples/echo.c \
 *       target/debug/libjanus_ffi.a -lpthread -ldl -lm -o echo
 * Run:
 *   ./echo HOST PORT TOKEN CLIENT_CERT_SEED_HEX SERVER_CERT_KEY_HEX
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "janus.h"

#define MODULE 3
#define SEQ 1
#define HEARTBEAT_MS 300
#define WAIT_MS 10000

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail(const char *what) {
    fprintf(stderr, "echo: %s\n", what);
    return 1;
}

static int unhex(const char *hex, uint8_t out[JANUS_KEY_LEN]) {
    if (strlen(hex) != 2 * JANUS_KEY_LEN) return -1;
    for (size_t i = 0; i < JANUS_KEY_LEN; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return -1;
        out[i] = (uint8_t)byte;
    }
    return 0;
}

struct conn {
    int fd;
    JanusClient *client;
};

/* Writes everything the library queued. */
static int flush_out(struct conn *k) {
    uint8_t buf[4096];
    size_t n = 0;
    JanusStatus s;
    while ((s = janus_client_poll_transmit(k->client, buf, sizeof buf, &n)) == JANUS_STATUS_OK) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(k->fd, buf + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return -1;
            off += (size_t)w;
        }
    }
    return s == JANUS_STATUS_NONE ? 0 : -1;
}

/* The next event, feeding the library socket bytes and clock ticks until one comes.
 * 1: an event (free it with janus_event_free); 0: nothing within WAIT_MS or the socket closed. */
static int next_event(struct conn *k, JanusEvent *ev) {
    uint64_t give_up = now_ms() + WAIT_MS;
    for (;;) {
        if (janus_client_poll_event(k->client, ev) == JANUS_STATUS_OK) return 1;
        if (flush_out(k) != 0) return 0;
        uint64_t now = now_ms();
        if (now >= give_up) return 0;
        uint64_t wake = give_up, deadline;
        if (janus_client_poll_timeout(k->client, &deadline) == JANUS_STATUS_OK && deadline < wake)
            wake = deadline;
        struct pollfd p = {.fd = k->fd, .events = POLLIN};
        int r = poll(&p, 1, wake > now ? (int)(wake - now) : 0);
        if (r < 0 && errno != EINTR) return 0;
        if (r > 0) {
            uint8_t buf[16384];
            ssize_t n = read(k->fd, buf, sizeof buf);
            if (n <= 0) return 0;
            janus_client_handle_bytes(k->client, now_ms(), buf, (size_t)n);
        }
        janus_client_handle_timeout(k->client, now_ms());
    }
}

static int send_request(struct conn *k, const char *data, int32_t *index) {
    JanusRequest req = {
        .module = MODULE,
        .seq = SEQ,
        .data = (const uint8_t *)data,
        .data_len = strlen(data),
    };
    if (janus_client_send(k->client, now_ms(), &req, index) != JANUS_STATUS_OK) return -1;
    return flush_out(k);
}

/* Waits for an event of `kind` (and, when index >= 0, with that index), skipping others
 * (heartbeats in between). The caller frees *ev. */
static int wait_for(struct conn *k, JanusEventKind kind, int32_t index, JanusEvent *ev) {
    while (next_event(k, ev)) {
        if (ev->kind == JANUS_EVENT_KIND_CLOSED) {
            fprintf(stderr, "echo: closed: %.*s\n", (int)ev->data_len, (const char *)ev->data);
            janus_event_free(ev);
            return -1;
        }
        if (ev->kind == kind && (index < 0 || ev->index == index)) return 0;
        if (ev->kind == JANUS_EVENT_KIND_REQUEST_FAILED || ev->kind == JANUS_EVENT_KIND_REQUEST_TIMEOUT) {
            fprintf(stderr, "echo: request %d did not get its reply (kind %d)\n", ev->index, ev->kind);
            janus_event_free(ev);
            return -1;
        }
        janus_event_free(ev);
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 6) return fail("usage: echo HOST PORT TOKEN CLIENT_CERT_SEED_HEX SERVER_CERT_KEY_HEX");
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* 1. This build reproduces the spec's golden vectors. */
    int vectors = janus_self_test();
    if (vectors < 0) return fail("the self-test failed");
    printf("known answers: %d ok\n", vectors);

    uint8_t client_seed[JANUS_KEY_LEN], server_key[JANUS_KEY_LEN], seed[JANUS_KEY_LEN];
    if (unhex(argv[4], client_seed) || unhex(argv[5], server_key)) return fail("keys are 64 hex digits");
    FILE *urandom = fopen("/dev/urandom", "rb");
    if (!urandom || fread(seed, 1, sizeof seed, urandom) != sizeof seed) return fail("no randomness");
    fclose(urandom);

    /* 2. Connect; the library handshakes. */
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) return fail("HOST is an IPv4 address");
    struct conn k = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    if (k.fd < 0 || connect(k.fd, (struct sockaddr *)&addr, sizeof addr) != 0) return fail("connect failed");
    int one = 1;
    setsockopt(k.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    JanusConfig config = {
        .token = argv[3],
        .client_cert_seed = client_seed,
        .server_cert_key = server_key,
        .seed = seed,
        .heartbeat_interval_ms = HEARTBEAT_MS,
    };
    if (janus_client_new(&config, now_ms(), &k.client) != JANUS_STATUS_OK) return fail("janus_client_new failed");
    memset(seed, 0, sizeof seed);

    JanusEvent ev = {0};
    if (wait_for(&k, JANUS_EVENT_KIND_ESTABLISHED, -1, &ev)) return fail("no handshake");
    janus_event_free(&ev);
    printf("connected\n");

    /* 3. Echo: the reply carries the request's index and data. */
    int32_t index = 0;
    if (send_request(&k, "hello janus", &index)) return fail("send failed");
    if (wait_for(&k, JANUS_EVENT_KIND_PACKET, index, &ev)) return fail("no echo");
    printf("echo: %.*s\n", (int)ev.data_len, (const char *)ev.data);
    janus_event_free(&ev);

    /* 4. Silence: the library heartbeats and the backend answers. */
    if (wait_for(&k, JANUS_EVENT_KIND_HEARTBEAT, -1, &ev)) return fail("no heartbeat");
    if (ev.code != 1) return fail("heartbeat not accepted");
    janus_event_free(&ev);
    printf("heartbeat: succeeded\n");

    /* 5. A push: the reply, then a packet with index 0. */
    if (send_request(&k, "push-me", &index)) return fail("send failed");
    if (wait_for(&k, JANUS_EVENT_KIND_PACKET, index, &ev)) return fail("no push reply");
    printf("push reply: %.*s\n", (int)ev.data_len, (const char *)ev.data);
    janus_event_free(&ev);
    if (wait_for(&k, JANUS_EVENT_KIND_PACKET, 0, &ev)) return fail("no push");
    printf("push: module=%d seq=%d data=%.*s\n", ev.module, ev.seq, (int)ev.data_len, (const char *)ev.data);
    janus_event_free(&ev);

    /* 6. A request the backend cannot serve fails with the server's message. */
    if (send_request(&k, "big:x", &index)) return fail("send failed");
    while (next_event(&k, &ev)) {
        if (ev.kind == JANUS_EVENT_KIND_REQUEST_FAILED && ev.index == index) break;
        janus_event_free(&ev);
    }
    if (ev.kind != JANUS_EVENT_KIND_REQUEST_FAILED) return fail("no failure");
    printf("failure: module=%d seq=%d message=%.*s\n", ev.module, ev.seq, (int)ev.data_len, (const char *)ev.data);
    janus_event_free(&ev);

    janus_client_close(k.client);
    while (janus_client_poll_event(k.client, &ev) == JANUS_STATUS_OK) janus_event_free(&ev);
    janus_client_free(k.client);
    close(k.fd);
    return 0;
}
