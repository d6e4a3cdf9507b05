/* cmd_exec: `agentbox exec`: one command in a fresh cell, stdio passed through, the cell record
 * written with --meta, and its exit codes. The only place exec's messages and exit
 * codes are chosen. Never passes the caller's environment into the cell (it may hold the
 * API key): the command gets cell_default_env(). */
#include "cmd_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell.h"
#include "commands.h"
#include "safedir.h"
#include "egress.h"
#include "egress_exec.h"
#include "exec_run.h"
#include "json.h"
#include "log.h"
#include "seed_open.h"
#include "util.h"

static const char usage_text[] =
    "usage: agentbox exec [OPTIONS] -- CMD [ARG...]\n"
    "\n"
    "Runs one command in a fresh cell (no LLM). stdin/stdout/stderr pass through.\n"
    "\n"
    "  --policy NAME|PATH     policy (policies/NAME.json, or a file); default \"default\"\n"
    "  --timeout SECONDS      wall-clock limit (e.g. 30, 1.5, 5m); exit 124 when hit\n"
    "  --disk SIZE            /workspace size (K, M, G = powers of 1024; at least 4K)\n"
    "  --inodes N             /workspace inode count\n"
    "  --memory SIZE          memory limit, at least 8M (cgroup; RLIMIT_AS without one)\n"
    "  --pids N               process limit, at least 2 (cgroup; RLIMIT_NPROC otherwise)\n"
    "  --cpu SECONDS          CPU time limit (RLIMIT_CPU); 0 = none\n"
    "  --workspace-from DIR   seed /workspace from DIR (DIR is never modified)\n"
    "  --network none|host    default none (own network namespace, loopback only)\n"
    "  --allow-host HOST[:PORT]  let the cell reach HOST through the egress proxy\n"
    "                         (repeatable; *.example.org for subdomains; ports 80, 443\n"
    "                         unless given); see docs/network.md\n"
    "  --resolve HOST:ADDR    pin HOST to ADDR for the proxy (mirrors, tests)\n"
    "  --meta FILE            write the cell record (JSON) to FILE\n" EXEC_RUN_USAGE
    "  --help                 this text\n"
    "\n"
    "Exit status: the command's; 128+N if it died of signal N; 124 timeout; 125 the cell\n"
    "could not be set up; 126 not executable; 127 not found; 2 usage error;\n"
    "130/143 when agentbox itself got SIGINT/SIGTERM (the cell is killed).\n";

static int opt_value(int argc, char **argv, int *i, const char *name, const char **val, char *err,
                     size_t errsz)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (a[n] == '=') {
        *val = a + n + 1;
        return 0;
    }
    if (*i + 1 >= argc)
        return errf(err, errsz, "%s needs a value", name);
    *val = argv[++*i];
    return 0;
}

int exec_options_parse(int argc, char **argv, struct exec_options *o, char *err, size_t errsz)
{
    static const char *const with_value[] = {
        "--policy", "--timeout",        "--disk",    "--inodes", "--memory",     "--pids",
        "--cpu",    "--workspace-from", "--network", "--meta",   "--allow-host", "--resolve"};
    memset(o, 0, sizeof(*o));
    o->policy = "default";
    o->network_host = -1;
    o->x = exec_extra_reset();
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
            return 0;
        }
        if (a[0] != '-')
            break; /* the command starts here */
        const char *name = NULL;
        for (size_t k = 0; k < ARRAY_SIZE(with_value); k++) {
            size_t n = strlen(with_value[k]);
            if (strncmp(a, with_value[k], n) == 0 && (a[n] == '\0' || a[n] == '='))
                name = with_value[k];
        }
        int xr = name ? 0 : exec_extra_option(argc, argv, &i, o->x, err, errsz);
        if (xr < 0)
            return -1;
        if (xr > 0)
            continue;
        if (!name)
            return errf(err, errsz, "unknown option '%s'", a);
        const char *v = NULL;
        if (opt_value(argc, argv, &i, name, &v, err, errsz) < 0)
            return -1;
        double d;
        if (strcmp(name, "--policy") == 0) {
            if (!*v)
                return errf(err, errsz, "--policy: empty name");
            o->policy = v;
        } else if (strcmp(name, "--timeout") == 0) {
            if (opt_seconds(name, v, 0, &d, err, errsz) < 0)
                return -1;
            o->limits.timeout_s = d;
            o->set |= LIMIT_SET_TIMEOUT;
        } else if (strcmp(name, "--cpu") == 0) {
            if (opt_seconds(name, v, 1, &d, err, errsz) < 0) /* 0: no CPU-time limit */
                return -1;
            o->limits.cpu_s = d;
            o->set |= LIMIT_SET_CPU;
        } else if (strcmp(name, "--disk") == 0) {
            if (opt_size(name, v, POLICY_MIN_DISK_BYTES, &o->limits.disk_bytes, err, errsz) < 0)
                return -1;
            o->set |= LIMIT_SET_DISK;
        } else if (strcmp(name, "--memory") == 0) {
            if (opt_size(name, v, POLICY_MIN_MEMORY_BYTES, &o->limits.memory_bytes, err, errsz) < 0)
                return -1;
            o->set |= LIMIT_SET_MEMORY;
        } else if (strcmp(name, "--inodes") == 0) {
            if (opt_count(name, v, 1, UINT32_MAX, &o->limits.inodes, err, errsz) < 0)
                return -1;
            o->set |= LIMIT_SET_INODES;
        } else if (strcmp(name, "--pids") == 0) {
            if (opt_count(name, v, POLICY_MIN_PIDS, UINT32_MAX, &o->limits.pids, err, errsz) < 0)
                return -1;
            o->set |= LIMIT_SET_PIDS;
        } else if (strcmp(name, "--workspace-from") == 0) {
            if (!*v)
                return errf(err, errsz, "--workspace-from: empty path");
            o->workspace_from = v;
        } else if (strcmp(name, "--allow-host") == 0 || strcmp(name, "--resolve") == 0) {
            if (egress_exec_option(o, name, v, err, errsz) < 0)
                return -1;
        } else if (strcmp(name, "--network") == 0) {
            if (strcmp(v, "none") == 0)
                o->network_host = 0;
            else if (strcmp(v, "host") == 0)
                o->network_host = 1;
            else
                return errf(err, errsz, "--network: expected none or host, got '%s'", v);
        } else {
            if (!*v)
                return errf(err, errsz, "--meta: empty path");
            o->meta = v;
        }
    }
    if (i >= argc)
        return errf(err, errsz, "missing command (agentbox exec [OPTIONS] -- CMD [ARG...])");
    if (!argv[i][0])
        return errf(err, errsz, "empty command name");
    o->argv = argv + i;
    return 0;
}

void exec_options_limits(const struct exec_options *o, const struct policy_limits *defaults,
                         struct policy_limits *out)
{
    *out = *defaults;
    policy_limits_override(out, o->set, &o->limits);
}

static int write_meta(int fd, const struct cell_record *rec, cJSON *network)
{
    cleanup_json cJSON *j = cell_record_to_json(rec);
    if (j && network)
        cJSON_AddItemToObject(j, "network", network);
    else
        cJSON_Delete(network);
    cleanup_free char *text = j ? json_print(j) : NULL;
    if (!text)
        return -1;
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
        write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0)
        return -1;
    return 0;
}

static int seed_open_arg(const char *dir, char *abs, char *err, size_t errsz)
{
    char why[ERR_MSG_MAX];
    if (seed_absolute_path(dir, abs, PATH_MAX) < 0)
        return errf(err, errsz, "--workspace-from %s: %s", dir, strerror(ENAMETOOLONG));
    int fd = seed_open(abs, NULL, why, sizeof(why));
    if (fd < 0)
        return errf(err, errsz, "--workspace-from %s", why);
    return fd;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "agentbox exec: %s\n", msg);
    return EXIT_USAGE;
}

/* Waits for the cell, its deadline, or SIGINT/SIGTERM/SIGHUP to agentbox; returns the signal
 * that made agentbox kill the cell, or 0. */
static int wait_cell(struct cell *c, int sfd, double timeout_s)
{
    double deadline = timeout_s > 0 ? monotonic_s() + timeout_s : 0;
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - monotonic_s();
            ms = left <= 0 ? 0 : (int)(left * 1000) + 1;
        }
        struct pollfd p[2] = {{.fd = cell_pidfd(c), .events = POLLIN},
                              {.fd = sfd, .events = POLLIN}};
        int r = poll(p, 2, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            (void)cell_kill(c);
            return 0;
        }
        if (p[0].revents)
            return 0;
        if (p[1].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                (void)cell_kill(c);
                return (int)si.ssi_signo;
            }
        }
        if (deadline > 0 && monotonic_s() >= deadline) {
            (void)cell_timeout(c);
            return 0;
        }
    }
}

/* --meta FILE opened for writing: its directory must be ours alone (a root exec must not
 * write through a link a user planted there); then the file itself may be a link
 * (/dev/stdout). The descriptor, or -1 with err set. */
static int open_meta(const char *meta, char *err, size_t errsz)
{
    char perr[ERR_MSG_MAX];
    int fd = -1;
    if (parent_check_trusted(meta, perr, sizeof(perr)) < 0)
        fd = -1;
    else if ((fd = open(meta, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644)) < 0)
        snprintf(perr, sizeof(perr), "%s", strerror(errno));
    if (fd < 0)
        snprintf(err, errsz, "--meta %.200s: %.280s", meta, perr);
    return fd;
}

/* The exit code for a reaped cell (sig: the signal that stopped our wait, or 0), with what
 * the user must be told on stderr. */
static int cell_exit_code(const struct cell_record *rec, int sig, double timeout_s,
                          const char *argv0)
{
    int code;
    if (sig)
        code = 128 + sig;
    else if (rec->status == CELL_TIMEOUT) {
        fprintf(stderr, "agentbox: timed out after %gs\n", timeout_s);
        code = EXIT_EXEC_TIMEOUT;
    } else if (rec->status == CELL_SIGNALED || (rec->status == CELL_MEMORY && rec->signal))
        code = 128 + rec->signal;
    else
        code = rec->exit_code;
    if (rec->exec_errno)
        fprintf(stderr, "agentbox: %s: %s\n", argv0, strerror(rec->exec_errno));
    if (rec->status == CELL_MEMORY)
        fprintf(stderr, "agentbox: the memory limit was hit\n");
    return code;
}

/* The cell's life: spawned (with its egress proxy when eg_rules is set), waited for (on a
 * tty or not, until a signal or the timeout), reaped into rec; the network summary in
 * *network. The exit code. */
static int run_cell(struct cell_config *cfg, const struct egress_rules *eg_rules,
                    struct exec_run *xr, int sfd, const char *argv0, struct cell_record *rec,
                    cJSON **network)
{
    char err[ERR_MSG_MAX];
    struct cell *c = NULL;
    struct egress *egp = NULL;
    if (cell_spawn(cfg, &c, err, sizeof(err)) < 0 ||
        (eg_rules && egress_exec_start(eg_rules, c, &egp, err, sizeof(err)) < 0)) {
        fprintf(stderr, "agentbox: %s\n", err);
        memset(rec, 0, sizeof(*rec));
        rec->status = CELL_SETUP_ERROR;
        rec->slot = -1;
        return EXIT_EXEC_SETUP;
    }
    /* Whatever the cell does from here, our memory is not for it to read. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    int sig = xr->tty_on ? exec_tty_wait(&xr->tty, c, sfd, cfg->limits.timeout_s)
                         : wait_cell(c, sfd, cfg->limits.timeout_s);
    *network = egp ? egress_finish(egp, egress_exec_print, NULL) : NULL;
    exec_run_keep_workspace(xr, c);
    int code;
    if (cell_reap(c, rec) < 0) {
        fprintf(stderr, "agentbox: waiting for the cell: %s\n", strerror(errno));
        rec->status = CELL_SETUP_ERROR;
        code = EXIT_EXEC_SETUP;
        /* as before: what the record holds is still reported */
        if (rec->exec_errno)
            fprintf(stderr, "agentbox: %s: %s\n", argv0, strerror(rec->exec_errno));
    } else
        code = cell_exit_code(rec, sig, cfg->limits.timeout_s, argv0);
    cell_free(c);
    return code;
}

int cmd_exec(int argc, char **argv)
{
    /* A closed stdin/stdout/stderr would be taken by the next file we open (a lock file, the
     * policy) and handed to the cell as its stdio. */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
            return EXIT_EXEC_SETUP;
    char err[ERR_MSG_MAX];
    struct exec_options o;
    if (exec_options_parse(argc, argv, &o, err, sizeof(err)) < 0)
        return usage_error(err);
    if (o.help) {
        fputs(usage_text, stdout);
        return 0;
    }
    /* The seed is opened here, with our own rights (as root: never through a name another
     * user controls); the cell only ever gets this descriptor. */
    cleanup_fd int seed_fd = -1;
    char seed_path[PATH_MAX];
    if (o.workspace_from &&
        (seed_fd = seed_open_arg(o.workspace_from, seed_path, err, sizeof(err))) < 0)
        return usage_error(err);
    struct policy *pol = NULL;
    if (policy_load(o.policy, &pol, err, sizeof(err)) < 0)
        return usage_error(err);
    struct exec_run xr;
    if (exec_run_prepare(&xr, &o, pol, err, sizeof(err)) < 0) {
        policy_free(pol);
        return usage_error(err);
    }
    bool host = o.network_host == 1;
    if (host && !pol->allow_network_host) {
        snprintf(err, sizeof(err), "--network host: policy '%s' does not allow it", pol->name);
        policy_free(pol);
        return usage_error(err);
    }
    struct egress_rules eg_rules;
    bool eg = false;
    if (policy_egress_rules(pol, o.network_host, o.allow, o.nallow, o.resolve, o.nresolve,
                            &eg_rules, &eg, err, sizeof(err)) < 0) {
        policy_free(pol);
        return usage_error(err);
    }
    cleanup_free char **eg_env =
        eg ? egress_cell_env(xr.envp ? xr.envp : cell_default_env()) : NULL;
    struct sock_fprog prog = {0};
    if ((eg && !eg_env) || policy_seccomp_build(pol, !host, &prog, err, sizeof(err)) < 0) {
        policy_free(pol);
        return usage_error(err);
    }
    cleanup_fd int meta_fd = -1;
    if (o.meta && (meta_fd = open_meta(o.meta, err, sizeof(err))) < 0) {
        policy_bpf_free(&prog);
        policy_free(pol);
        return usage_error(err);
    }
    struct cell_config cfg = {.policy = pol,
                              .seccomp = &prog,
                              .network_host = host,
                              .egress = eg,
                              .workspace_from = o.workspace_from ? seed_path : NULL,
                              .seed_fd = seed_fd,
                              .pid1 = CELL_PID1_COMMAND,
                              .argv = xr.argv,
                              .envp = eg_env ? eg_env : xr.envp,
                              .channel_fd = -1,
                              .stdio_passthrough = true,
                              .stdout_fd = -1,
                              .stderr_fd = -1};
    exec_options_limits(&o, &pol->limits, &cfg.limits);
    if (exec_run_start(&xr, &cfg, err, sizeof(err)) < 0) {
        exec_run_finish(&xr, false);
        policy_bpf_free(&prog);
        policy_free(pol);
        return usage_error(err);
    }

    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    cleanup_fd int sfd = -1;
    if (sigprocmask(SIG_BLOCK, &sigs, &old) == 0)
        sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);

    struct cell_record rec;
    cJSON *network = NULL;
    int code = run_cell(&cfg, eg ? &eg_rules : NULL, &xr, sfd, o.argv[0], &rec, &network);
    if (exec_run_finish(&xr, rec.status != CELL_SETUP_ERROR) < 0 && code == 0)
        code = EXIT_EXEC_SETUP;
    if (meta_fd < 0)
        cJSON_Delete(network);
    else if (write_meta(meta_fd, &rec, network) < 0) {
        fprintf(stderr, "agentbox: --meta %s: %s\n", o.meta, strerror(errno));
        if (code == 0)
            code = EXIT_EXEC_SETUP;
    }
    (void)sigprocmask(SIG_SETMASK, &old, NULL);
    policy_bpf_free(&prog);
    policy_free(pol);
    return code;
}
