/* util: see util.h. Parsing here is strict: anything not fully understood is refused. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "grow.h"

int errf(char *err, size_t errsz, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int uint_parse(const char *text, uint64_t max, uint64_t *out)
{
    if (!text || !*text)
        return -1;
    uint64_t v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int size_parse(const char *text, uint64_t *out)
{
    if (!text || !*text)
        return -1;
    size_t n = strspn(text, "0123456789");
    if (n == 0 || n > 19)
        return -1;
    char digits[20];
    memcpy(digits, text, n);
    digits[n] = '\0';
    uint64_t v;
    if (uint_parse(digits, UINT64_MAX, &v) < 0)
        return -1;
    const char *suf = text + n;
    unsigned shift = 0;
    switch (*suf) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        suf++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        suf++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        suf++;
        break;
    case 't':
    case 'T':
        shift = 40;
        suf++;
        break;
    case 'b':
    case 'B':
        break;
    default:
        return -1;
    }
    if (shift && (strcmp(suf, "iB") == 0 || strcmp(suf, "B") == 0))
        suf += strlen(suf);
    else if (!shift && (strcmp(suf, "B") == 0 || strcmp(suf, "b") == 0))
        suf += 1;
    if (*suf)
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

int seconds_parse(const char *text, double *out)
{
    if (!text || !*text)
        return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || !isfinite(v) || v < 0)
        return -1;
    /* strtod accepts hex floats, "inf" and leading blanks: refuse all of them */
    if (text[0] == ' ' || text[0] == '\t' || text[0] == '+' || strpbrk(text, "xXnNiIeE"))
        return -1;
    double mult = 1;
    if (*end == 's' && end[1] == '\0')
        end++;
    else if (*end == 'm' && end[1] == '\0')
        mult = 60, end++;
    else if (*end == 'h' && end[1] == '\0')
        mult = 3600, end++;
    if (*end)
        return -1;
    v *= mult;
    if (v > 366.0 * 24 * 3600)
        return -1;
    *out = v;
    return 0;
}

int opt_seconds(const char *opt, const char *text, int zero_ok, double *out, char *err,
                size_t errsz)
{
    double d;
    if (seconds_parse(text, &d) < 0)
        return errf(err, errsz, "%s: expected seconds (like 30, 1.5, 5m or 2h), got '%s'", opt,
                    text);
    if (d == 0 && !zero_ok)
        return errf(err, errsz, "%s: expected more than 0 seconds, got '%s'", opt, text);
    *out = d;
    return 0;
}

int opt_size(const char *opt, const char *text, uint64_t min, uint64_t *out, char *err,
             size_t errsz)
{
    uint64_t v;
    if (size_parse(text, &v) < 0)
        return errf(err, errsz,
                    "%s: expected a size (like 512M; K, M, G are powers of 1024), got '%s'", opt,
                    text);
    if (v < min) {
        char m[32];
        return errf(err, errsz, "%s: %s is below the working minimum of %s", opt, text,
                    size_format(min, m, sizeof(m)));
    }
    *out = v;
    return 0;
}

int opt_count(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out,
              char *err, size_t errsz)
{
    uint64_t v;
    if (uint_parse(text, max, &v) < 0 || v < min)
        return errf(err, errsz,
                    "%s: expected a whole number from %" PRIu64 " to %" PRIu64 ", got '%s'", opt,
                    min, max, text);
    *out = v;
    return 0;
}

const char *size_format(uint64_t bytes, char *buf, size_t bufsz)
{
    static const char units[] = "KMGT";
    int u = -1;
    uint64_t v = bytes;
    while (v >= 1024 && v % 1024 == 0 && u < 3) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, bufsz, "%" PRIu64, v);
    else
        snprintf(buf, bufsz, "%" PRIu64 "%c", v, units[u]);
    return buf;
}

double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double wallclock_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int read_fd_bounded(int fd, size_t max, char **out, size_t *outlen)
{
    struct stat st;
    size_t first = 65536;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > max) { /* refused before a byte is read */
            errno = EFBIG;
            return -1;
        }
        first = (size_t)st.st_size + 2; /* the file, its NUL, and one byte to see the end */
    }
    /* a byte past max is read (and refused), not silently cut off */
    size_t most = max < SIZE_MAX - 2 ? max + 2 : SIZE_MAX;
    if (first > most)
        first = most;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (grow_to_fit(&buf, len + 1, &cap, 1, first, most) < 0)
            break;
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (r == 0) {
            buf[len] = '\0';
            *out = buf;
            if (outlen)
                *outlen = len;
            return 0;
        }
        len += (size_t)r;
        if (len > max) { /* grew while it was read, or a pipe longer than allowed */
            errno = EFBIG;
            break;
        }
    }
    int e = errno == E2BIG ? EFBIG : errno;
    free(buf);
    errno = e;
    return -1;
}

int read_input(const char *path, size_t max, char **out, size_t *outlen)
{
    if (strcmp(path, "-") != 0)
        return read_file(path, max, out, outlen);
    return read_fd_bounded(STDIN_FILENO, max, out, outlen);
}

int read_file(const char *path, size_t max, char **out, size_t *outlen)
{
    cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return -1;
    }
    return read_fd_bounded(fd, max, out, outlen);
}

const char *self_exe_path(void)
{
    static char path[4096];
    if (!path[0]) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
        if (n > 0)
            path[n] = '\0';
    }
    return path;
}

static int try_candidate(const char *dir, const char *mid, const char *rel, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s/%s", dir, mid, rel);
    if (n < 0 || (size_t)n >= outsz)
        return -1;
    return access(out, R_OK) == 0 ? 0 : -1;
}

int data_path(const char *rel, char *out, size_t outsz)
{
    const char *env = getenv("AGENTBOX_DATA_DIR");
    if (env && *env && try_candidate(env, "", rel, out, outsz) == 0)
        return 0;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", self_exe_path());
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        if (try_candidate(dir, "", rel, out, outsz) == 0 ||
            try_candidate(dir, "/../share/agentbox", rel, out, outsz) == 0)
            return 0;
    }
    errno = ENOENT;
    return -1;
}

int dir_ensure(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) {
        struct stat st;
        if (lstat(path, &st) < 0)
            return -1;
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        /* someone else's, or open to others: not ours to write into */
        if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
            errno = EPERM;
            return -1;
        }
        return 0;
    }
    return -1;
}
