/*
 * A stand-in for Grafana Alloy in the boot test: just enough of `alloy run` to be supervised.
 *
 *   alloy --version
 *   alloy run [--storage.path=DIR] [--other.flag=VALUE ...] CONFIG
 *
 * `run` reads CONFIG (exit 1 with a message when it cannot), creates DIR (Alloy's default is
 * data-alloy/ in the working directory) and writes DIR/started, listens on
 * --server.http.listen-addr (Alloy's default 127.0.0.1:12345; exit 1 when it cannot), logs in
 * Alloy's logfmt to stderr, and stays up. GET /-/ready answers 200, as Alloy's does once it runs;
 * built with -DSTAND_IN_NEVER_READY it answers 503 forever (an update that never gets healthy).
 * SIGHUP re-reads CONFIG and appends a line to DIR/reloads; SIGTERM or SIGINT writes DIR/stopped
 * and exits 0. The version it reports is -DSTAND_IN_VERSION="X.Y.Z" (default 0.0.0-e2e).
 * At start, as whatever user the unit runs it as, it also records what loki.source.journal and
 * an update across --run-as need: DIR/journal.json (what `journalctl -n 1 -o json` printed, and
 * its exit status in DIR/journal.status) and DIR/previous (whether the DIR/started an earlier
 * run left could be read).
 * Built statically (gcc -static) to run in any root.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef STAND_IN_VERSION
#define STAND_IN_VERSION "0.0.0-e2e"
#endif
#define VERSION_LINE "alloy, version v" STAND_IN_VERSION " (stand-in for the alloy-sysext boot test)"
#ifdef STAND_IN_NEVER_READY
#define READY_STATUS "503 Service Unavailable"
#define READY_BODY "Alloy is not ready (stand-in built never to be ready).\n"
#else
#define READY_STATUS "200 OK"
#define READY_BODY "Alloy is ready.\n"
#endif

static volatile sig_atomic_t got_hup;
static volatile sig_atomic_t got_term;

static void on_signal(int signo) {
    if (signo == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
}

/* One logfmt line on stderr, as Alloy logs: journald records it for the unit. */
static void log_line(const char *level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fprintf(stderr, "ts=%lld.%03ld level=%s msg=\"%s\"\n", (long long)now.tv_sec,
            now.tv_nsec / 1000000, level, msg);
}

/* The config's size in bytes, or -1 with errno set. */
static long read_config(const char *path) {
    FILE *file = fopen(path, "r");
    if (!file)
        return -1;
    char buffer[4096];
    long size = 0;
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, file)) > 0)
        size += (long)n;
    int failed = ferror(file);
    fclose(file);
    if (failed) {
        errno = EIO;
        return -1;
    }
    return size;
}

static int make_dirs(const char *path) {
    char buffer[4096];
    if (snprintf(buffer, sizeof buffer, "%s", path) >= (int)sizeof buffer) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buffer + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buffer, 0770) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buffer, 0770) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Write DIR/NAME whole (a temporary name, then rename), or append a line with append != 0. */
static int record(const char *dir, const char *name, int append, const char *fmt, ...) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    FILE *file = fopen(append ? path : tmp, append ? "a" : "w");
    if (!file)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(file, fmt, ap);
    va_end(ap);
    if (fclose(file) != 0)
        return -1;
    return append ? 0 : rename(tmp, path);
}

/* A listening TCP socket on HOST:PORT (IPv4), or -1 with errno set. */
static int listen_on(const char *address) {
    char host[256];
    const char *colon = strrchr(address, ':');
    if (!colon || (size_t)(colon - address) >= sizeof host) {
        errno = EINVAL;
        return -1;
    }
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &addr.sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* One request on a new connection: GET /-/ready gets the readiness answer, anything else 404. */
static void answer(int listener) {
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct timeval limit = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    char request[2048];
    ssize_t n = recv(fd, request, sizeof request - 1, 0);
    request[n > 0 ? n : 0] = '\0';
    const char *status = "404 Not Found", *body = "404 page not found\n";
    if (strncmp(request, "GET /-/ready ", 13) == 0) {
        status = READY_STATUS;
        body = READY_BODY;
    }
    char response[512];
    int length = snprintf(response, sizeof response,
                          "HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n%s",
                          status, strlen(body), body);
    send(fd, response, (size_t)length, MSG_NOSIGNAL);
    close(fd);
}

/* DIR/journal.json: one journal entry, read as this process's user (the journal is readable by
 * groups systemd-journal and adm); DIR/journal.status: journalctl's exit status. */
static void read_journal(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/journal.json", dir);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0)
        return;
    pid_t child = fork();
    if (child == 0) {
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
        char *argv[] = {"journalctl", "-n", "1", "-o", "json", "--no-pager", NULL};
        execv("/usr/bin/journalctl", argv);
        _exit(127);
    }
    close(out);
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) < 0)
        status = -1;
    record(dir, "journal.status", 0, "%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* DIR/previous: whether the DIR/started an earlier run (maybe as another user) left is readable. */
static void read_previous(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/started", dir);
    if (access(path, F_OK) != 0)
        return;
    long size = read_config(path);
    if (size < 0)
        record(dir, "previous", 0, "unreadable: %s\n", strerror(errno));
    else
        record(dir, "previous", 0, "read %ld bytes\n", size);
}

static int usage(void) {
    fprintf(stderr, "usage: alloy --version | alloy run [--storage.path=DIR] [FLAGS] CONFIG\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0)) {
        puts(VERSION_LINE);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "run") != 0)
        return usage();

    const char *storage = "data-alloy";
    const char *listen_addr = "127.0.0.1:12345";
    const char *config = NULL;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--storage.path=", 15) == 0) {
            storage = arg + 15;
        } else if (strcmp(arg, "--storage.path") == 0 && i + 1 < argc) {
            storage = argv[++i];
        } else if (strncmp(arg, "--server.http.listen-addr=", 26) == 0) {
            listen_addr = arg + 26;
        } else if (arg[0] == '-') {
            continue; /* other flags (as --flag=value) are accepted and ignored */
        } else if (config) {
            fprintf(stderr, "error: more than one config path: %s and %s\n", config, arg);
            return usage();
        } else {
            config = arg;
        }
    }
    if (!config) {
        fprintf(stderr, "error: no config path given\n");
        return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    long size = read_config(config);
    if (size < 0) {
        fprintf(stderr, "Error: could not read config %s: %s\n", config, strerror(errno));
        return 1;
    }
    if (make_dirs(storage) != 0) {
        fprintf(stderr, "Error: could not create storage path %s: %s\n", storage,
                strerror(errno));
        return 1;
    }

    int listener = listen_on(listen_addr);
    if (listener < 0) {
        fprintf(stderr, "Error: could not listen on %s: %s\n", listen_addr, strerror(errno));
        return 1;
    }

    /* Handlers first, then "started": whoever waits for that file may signal right away. */
    sigset_t blocked, previous;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGHUP);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigprocmask(SIG_BLOCK, &blocked, &previous);
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGHUP, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    read_previous(storage);
    read_journal(storage);
    if (record(storage, "started", 0, "pid=%ld\nconfig=%s\nconfig_bytes=%ld\n", (long)getpid(),
               config, size) != 0) {
        fprintf(stderr, "Error: could not write under storage path %s: %s\n", storage,
                strerror(errno));
        return 1;
    }
    printf("%s\n", VERSION_LINE);
    log_line("info", "now listening http=%s config=%s storage=%s", listen_addr, config, storage);

    unsigned reloads = 0;
    for (;;) {
        while (!got_hup && !got_term) {
            /* Signals are blocked between checks and only let in while waiting: none is lost. */
            fd_set readable;
            FD_ZERO(&readable);
            FD_SET(listener, &readable);
            if (pselect(listener + 1, &readable, NULL, NULL, NULL, &previous) > 0)
                answer(listener);
        }
        if (got_term) {
            log_line("info", "received shutdown signal, exiting");
            record(storage, "stopped", 0, "reloads=%u\n", reloads);
            return 0;
        }
        got_hup = 0;
        size = read_config(config);
        if (size < 0) {
            /* Alloy keeps running with its old config when a reload fails. */
            log_line("error", "reload failed: could not read config %s: %s", config,
                  strerror(errno));
            continue;
        }
        reloads++;
        record(storage, "reloads", 1, "reload=%u config_bytes=%ld\n", reloads, size);
        log_line("info", "config reloaded reload=%u config=%s", reloads, config);
    }
}
