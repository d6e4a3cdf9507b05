/* cmd_policy: `agentbox policy check FILE...` and `agentbox policy show NAME|FILE`, the user's
 * way to validate a policy before a cell ever uses it. Prints and picks exit codes; the
 * parsing and compiling live in sandbox/policy.c and sandbox/seccomp.c. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "json.h"
#include "policy.h"
#include "util.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: agentbox policy check FILE|NAME...\n"
        "       agentbox policy show [--bpf] FILE|NAME\n\n"
        "check  parse, validate and compile each policy (with and without --network none);\n"
        "       prints \"FILE: ok (...)\" per policy, or the first error with the file and\n"
        "       the field path (or line and column for a JSON syntax error). Exit 0 when\n"
        "       all are valid, 2 otherwise.\n"
        "show   print the effective policy (\"extends\" resolved, built-in defaults filled in)\n"
        "       as JSON; with --bpf, the policy's own seccomp filter as libseccomp pseudo-code\n"
        "       (the fixed baseline every policy gets is described in docs/policy.md).\n\n"
        "A NAME (a-z 0-9 _ -) is policies/NAME.json beside agentbox, in ../share/agentbox or\n"
        "in $AGENTBOX_DATA_DIR; anything with a '/' or ending in .json is a path.\n"
        "The format: docs/policy.md.\n");
}

static int check_one(const char *arg)
{
    char err[ERR_MSG_MAX];
    struct policy *p;
    if (policy_load(arg, &p, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    unsigned short len[2] = {0, 0};
    int r = 0;
    for (int none = 0; none < 2 && r == 0; none++) {
        struct sock_fprog prog;
        if (policy_seccomp_build(p, none, &prog, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s: %s\n", p->source, err);
            r = -1;
            break;
        }
        len[none] = prog.len;
        policy_bpf_free(&prog);
    }
    if (r == 0 && p->nbinds == 0) /* valid, but nothing to run: no /usr, no /bin */
        fprintf(stderr,
                "%s: warning: the policy binds nothing read-only (no \"extends\", no "
                "\"ro_binds\"): a cell sees no /usr or /bin and can run no host program; add "
                "\"extends\": \"default\" or the binds it needs\n",
                arg);
    if (r == 0)
        printf("%s: ok (policy \"%s\": %zu syscall rules, default_action %s; %zu read-only "
               "binds; filter %u instructions)\n",
               arg, p->name, p->nrules, policy_action_name(p->default_action), p->nbinds, len[1]);
    policy_free(p);
    return r;
}

static int show(const char *arg, bool bpf)
{
    char err[ERR_MSG_MAX];
    struct policy *p;
    if (policy_load(arg, &p, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return EXIT_USAGE;
    }
    int rc = 0;
    if (bpf) {
        if (fflush(stdout) != 0 ||
            policy_seccomp_export_pfc(p, STDOUT_FILENO, err, sizeof(err)) < 0) {
            fprintf(stderr, "agentbox: policy show: %s\n", err);
            rc = 1;
        }
    } else {
        cleanup_json cJSON *j = policy_to_json(p);
        char *text = j ? json_print_pretty(j) : NULL;
        if (!text) {
            fprintf(stderr, "agentbox: policy show: out of memory\n");
            rc = 1;
        } else {
            printf("%s\n", text);
            free(text);
        }
    }
    policy_free(p);
    if (fflush(stdout) != 0 && rc == 0) {
        perror("agentbox: policy show: stdout");
        rc = 1;
    }
    return rc;
}

int cmd_policy(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if (strcmp(sub, "check") == 0) {
        if (argc < 3) {
            fprintf(stderr, "agentbox: policy check: which file? (agentbox policy --help)\n");
            return EXIT_USAGE;
        }
        int bad = 0;
        for (int i = 2; i < argc; i++)
            bad += check_one(argv[i]) < 0;
        return bad ? EXIT_USAGE : 0;
    }
    if (strcmp(sub, "show") == 0) {
        bool bpf = argc == 4 && strcmp(argv[2], "--bpf") == 0;
        if (argc != 3 + bpf || argv[argc - 1][0] == '-') {
            fprintf(stderr, "usage: agentbox policy show [--bpf] FILE|NAME\n");
            return EXIT_USAGE;
        }
        return show(argv[argc - 1], bpf);
    }
    fprintf(stderr, "agentbox: policy: unknown subcommand '%s' (check, show)\n", sub);
    return EXIT_USAGE;
}
