/* batch_report: see batch_report.h. The JUnit text is built with stdio into a temporary
 * file; every attribute and text node goes through one escaper that also drops what XML 1.0
 * cannot carry (control characters, invalid UTF-8), since agent output is arbitrary bytes. */
#include "batch_report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define JUNIT_TEXT_MAX_BYTES (64u << 10) /* of one task's output in the report */

const char *batch_outcome_name(enum batch_outcome o)
{
    return o == BATCH_NOT_RUN ? "not_run" : task_status_name((enum task_status)o);
}

enum batch_outcome batch_outcome_of(const cJSON *result)
{
    if (!result)
        return BATCH_NOT_RUN;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(result, "status");
    if (!cJSON_IsString(st))
        return BATCH_FAILED;
    int s = task_status_parse(st->valuestring);
    return s < 0 ? BATCH_FAILED : (enum batch_outcome)s;
}

static double usage_num(const cJSON *result, const char *name)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(result, "usage");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(u, name);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble > 0 ? v->valuedouble : 0;
}

void batch_tally_add(struct batch_tally *t, const cJSON *result, bool resumed)
{
    t->count[batch_outcome_of(result)]++;
    t->total++;
    if (resumed)
        t->resumed++;
    t->tokens += usage_num(result, "total_tokens");
    t->cost_usd += usage_num(result, "cost_usd");
}

int batch_exit_code(const struct batch_tally *t)
{
    if (t->count[BATCH_FAILED] || t->count[BATCH_TIMEOUT] || t->count[BATCH_CANCELLED] ||
        t->count[BATCH_NOT_RUN])
        return 1;
    if (t->count[BATCH_ESCALATED])
        return 3;
    if (t->count[BATCH_MOCK])
        return 4;
    return 0;
}

static const char *fmt_duration(double s, char *buf, size_t bufsz)
{
    if (!(s >= 0) || !isfinite(s))
        snprintf(buf, bufsz, "--");
    else if (s < 60)
        snprintf(buf, bufsz, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, bufsz, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
    else
        snprintf(buf, bufsz, "%.0fh%02.0fm", floor(s / 3600), floor(fmod(s, 3600) / 60));
    return buf;
}

static const char *fmt_tokens(double n, char *buf, size_t bufsz)
{
    if (n < 1e4)
        snprintf(buf, bufsz, "%.0f", n);
    else if (n < 1e7)
        snprintf(buf, bufsz, "%.1fk", n / 1e3);
    else
        snprintf(buf, bufsz, "%.1fM", n / 1e6);
    return buf;
}

void batch_summary_format(const struct batch_tally *t, double wall_s, int exit_code, char *buf,
                          size_t bufsz)
{
    char dur[32];
    snprintf(buf, bufsz,
             "%u task%s: %u succeeded, %u failed, %u timeout, %u cancelled, %u escalated, "
             "%u mock, %u not run (%u resumed); %s, %.0f tokens, $%.4f; exit %d",
             t->total, t->total == 1 ? "" : "s", t->count[BATCH_SUCCEEDED], t->count[BATCH_FAILED],
             t->count[BATCH_TIMEOUT], t->count[BATCH_CANCELLED], t->count[BATCH_ESCALATED],
             t->count[BATCH_MOCK], t->count[BATCH_NOT_RUN], t->resumed,
             fmt_duration(wall_s, dur, sizeof(dur)), t->tokens, t->cost_usd, exit_code);
}

double batch_eta(double avg_s, unsigned queued, unsigned jobs, const double *running_elapsed,
                 unsigned nrunning)
{
    if (!(avg_s > 0) || jobs == 0)
        return -1;
    /* a running task needs what the average leaves it, or, once past the average, about half
     * as long again as it has run: never nothing while it runs */
    double longest = 0;
    for (unsigned i = 0; i < nrunning; i++) {
        double left = fmax(avg_s - running_elapsed[i], running_elapsed[i] / 2);
        longest = fmax(longest, left);
    }
    double eta = (double)queued * avg_s / jobs + longest;
    return nrunning > 0 || queued > 0 ? fmax(1, ceil(eta)) : 0;
}

void batch_progress_format(char *buf, size_t bufsz, unsigned width, unsigned done, unsigned total,
                           unsigned failed, unsigned running, double eta_s, double tokens,
                           double cost_usd, double rate_wait_s)
{
    char eta[32], tok[32], tail[260], wait[64] = "";
    if (rate_wait_s >= 0.5)
        snprintf(wait, sizeof(wait), ", waiting for rate limit: %.0f s", rate_wait_s);
    int tl =
        snprintf(tail, sizeof(tail), " %u/%u done, %u failed, %u running, ETA %s, %s tok, $%.4f%s",
                 done, total, failed, running, fmt_duration(eta_s, eta, sizeof(eta)),
                 fmt_tokens(tokens, tok, sizeof(tok)), cost_usd, wait);
    if (tl < 0)
        tl = 0;
    int barw = (int)width - tl - 3;
    if (barw > 40)
        barw = 40;
    if (barw < 5) {
        snprintf(buf, bufsz, "%s", tail + 1);
        return;
    }
    int filled = total ? (int)((double)barw * done / total) : barw;
    char bar[64];
    for (int i = 0; i < barw; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[barw] = '\0';
    snprintf(buf, bufsz, "[%s]%s", bar, tail);
}

/* ---- JUnit ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len;
    unsigned cp;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe ||
        cp == 0xffff)
        return 0;
    return len;
}

static void xml_text(FILE *f, const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p), done = 0;
    while (done < n) {
        if (done >= max) {
            fputs("\n[... truncated]", f);
            return;
        }
        unsigned char c = p[done];
        size_t l = utf8_len(p + done, n - done);
        if (l == 0) {
            fputs("\xef\xbf\xbd", f); /* U+FFFD for a byte that is not UTF-8 */
            done++;
            continue;
        }
        if (l == 1) {
            switch (c) {
            case '&':
                fputs("&amp;", f);
                break;
            case '<':
                fputs("&lt;", f);
                break;
            case '>':
                fputs("&gt;", f);
                break;
            case '"':
                fputs("&quot;", f);
                break;
            case '\'':
                fputs("&apos;", f);
                break;
            case '\n':
                fputs("&#10;", f);
                break;
            case '\r':
                fputs("&#13;", f);
                break;
            case '\t':
                fputs("&#9;", f);
                break;
            default:
                fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
            }
        } else {
            fwrite(p + done, 1, l, f);
        }
        done += l;
    }
}

static const char *json_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double json_num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : 0;
}

static void write_case(FILE *f, const struct batch_case *c, const char *suite)
{
    enum batch_outcome o = batch_outcome_of(c->result);
    fputs("    <testcase classname=\"", f);
    xml_text(f, suite, 1024);
    fputs("\" name=\"", f);
    xml_text(f, c->id, 1024);
    fprintf(f, "\" time=\"%.3f\">\n", json_num(c->result, "execution_time"));
    if (c->result) {
        fputs("      <properties>\n", f);
        fprintf(f, "        <property name=\"status\" value=\"%s\"/>\n", batch_outcome_name(o));
        fputs("        <property name=\"model\" value=\"", f);
        xml_text(f, json_str(c->result, "model"), 1024);
        fputs("\"/>\n", f);
        fprintf(f, "        <property name=\"iterations\" value=\"%.0f\"/>\n",
                json_num(c->result, "iterations"));
        fprintf(f, "        <property name=\"total_tokens\" value=\"%.0f\"/>\n",
                usage_num(c->result, "total_tokens"));
        fprintf(f, "        <property name=\"cost_usd\" value=\"%.6f\"/>\n",
                usage_num(c->result, "cost_usd"));
        fputs("      </properties>\n", f);
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(c->result, "error");
    const char *etype = json_str(err, "type");
    const char *emsg = json_str(err, "message");
    if (c->resumed) {
        fprintf(f,
                "      <skipped message=\"resumed: finished in an earlier run with status %s\"/>\n",
                batch_outcome_name(o));
    } else if (c->missing) {
        fputs("      <failure type=\"missing\" message=\"missing: no shard's output has a result "
              "for this task\">status: missing</failure>\n",
              f);
    } else if (o == BATCH_NOT_RUN) {
        fputs("      <skipped message=\"not run: the batch was interrupted first\"/>\n", f);
    } else if (o != BATCH_SUCCEEDED) {
        fputs("      <failure type=\"", f);
        xml_text(f, etype ? etype : batch_outcome_name(o), 256);
        fprintf(f, "\" message=\"%s", batch_outcome_name(o));
        if (emsg) {
            fputs(": ", f);
            xml_text(f, emsg, 1024);
        }
        fputs("\">", f);
        fprintf(f, "status: %s", batch_outcome_name(o));
        if (o == BATCH_MOCK)
            fputs(" (a mock result: no model produced this output)", f);
        if (etype) {
            fputs("&#10;error: ", f);
            xml_text(f, etype, 256);
        }
        if (emsg) {
            fputs("&#10;", f);
            xml_text(f, emsg, JUNIT_TEXT_MAX_BYTES);
        }
        fputs("</failure>\n", f);
    }
    const char *out = json_str(c->result, "output");
    if (out && out[0]) {
        fputs("      <system-out>", f);
        xml_text(f, out, JUNIT_TEXT_MAX_BYTES);
        fputs("</system-out>\n", f);
    }
    fputs("    </testcase>\n", f);
}

int batch_junit_probe(const char *path, char *err, size_t errsz)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return errf(err, errsz, "--junit %s: %s", path, strerror(EISDIR));
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return errf(err, errsz, "--junit %s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return errf(err, errsz, "--junit %s: %s", path, strerror(errno));
    (void)close(fd);
    (void)unlink(tmp);
    return 0;
}

int batch_junit_write(const char *path, const char *suite, const struct batch_case *cases, size_t n,
                      double wall_s, char *err, size_t errsz)
{
    unsigned failures = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        enum batch_outcome o = batch_outcome_of(cases[i].result);
        if (cases[i].missing)
            failures++;
        else if (cases[i].resumed || o == BATCH_NOT_RUN)
            skipped++;
        else if (o != BATCH_SUCCEEDED)
            failures++;
    }
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return errf(err, errsz, "--junit %s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0)
            (void)close(fd);
        return errf(err, errsz, "--junit %s: %s", tmp, strerror(e));
    }
    char stamp[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
    fprintf(f,
            "<testsuites name=\"agentbox batch\" tests=\"%zu\" failures=\"%u\" errors=\"0\" "
            "skipped=\"%u\" time=\"%.3f\">\n",
            n, failures, skipped, wall_s);
    fputs("  <testsuite name=\"", f);
    xml_text(f, suite, 1024);
    fprintf(f,
            "\" tests=\"%zu\" failures=\"%u\" errors=\"0\" skipped=\"%u\" time=\"%.3f\" "
            "timestamp=\"%s\">\n",
            n, failures, skipped, wall_s, stamp);
    for (size_t i = 0; i < n; i++)
        write_case(f, &cases[i], suite);
    fputs("  </testsuite>\n</testsuites>\n", f);
    int werr = ferror(f) ? (errno ? errno : EIO) : 0;
    if (fclose(f) != 0 && !werr)
        werr = errno;
    if (werr) {
        (void)unlink(tmp);
        return errf(err, errsz, "--junit %s: %s", path, strerror(werr));
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        (void)unlink(tmp);
        return errf(err, errsz, "--junit %s: %s", path, strerror(e));
    }
    return 0;
}
