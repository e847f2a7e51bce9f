/*
 * A stand-in for Grafana Alloy in the boot test: just enough of `alloy run` to be supervised.
 *
 *   alloy --version
 *   alloy run [--storage.path=DIR] [--other.flag=VALUE ...] CONFIG
 *
 * `run` reads CONFIG (exit 1 with a message when it cannot), creates DIR (Alloy's default is
 * data-alloy/ in the working directory) and writes DIR/started, logs in Alloy's logfmt to stderr,
 * and stays up. SIGHUP re-reads CONFIG and appends a line to DIR/reloads; SIGTERM or SIGINT
 * writes DIR/stopped and exits 0. Built statically (gcc -static) to run in any root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VERSION_LINE "alloy, version v0.0.0-e2e (stand-in for the alloy-sysext boot test)"

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
    const char *config = NULL;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--storage.path=", 15) == 0) {
            storage = arg + 15;
        } else if (strcmp(arg, "--storage.path") == 0 && i + 1 < argc) {
            storage = argv[++i];
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

    if (record(storage, "started", 0, "pid=%ld\nconfig=%s\nconfig_bytes=%ld\n", (long)getpid(),
               config, size) != 0) {
        fprintf(stderr, "Error: could not write under storage path %s: %s\n", storage,
                strerror(errno));
        return 1;
    }
    printf("%s\n", VERSION_LINE);
    log_line("info", "now listening (stand-in: nothing is served) config=%s storage=%s", config,
          storage);

    unsigned reloads = 0;
    for (;;) {
        while (!got_hup && !got_term)
            sigsuspend(&previous); /* signals are blocked between checks: none is lost */
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
