/* serve_egress: the supervisor's egress ceiling: the hosts (and pins) an operator lets any
 * task's cells reach, which no client's task can widen; with a ceiling set, "network":
 * "host" is refused too. Checks only: the proxy is started by the runner. */
#include <stdio.h>
#include <string.h>

#include "serve.h"
#include "task_egress.h"
#include "util.h"

int serve_egress_option(struct server *s, bool pin, const char *v, char *err, size_t errsz)
{
    char why[ERR_MSG_MAX];
    int r = pin ? egress_rules_add_pin(&s->egress_ceiling, v, why, sizeof(why))
                : egress_rules_add(&s->egress_ceiling, v, why, sizeof(why));
    if (r < 0)
        return errf(err, errsz, "%s: %s", pin ? "--egress-resolve" : "--egress-allow", why);
    s->egress_ceiling_set = true;
    return 0;
}

int serve_egress_check(const struct server *s, const struct task *t, char *err, size_t errsz)
{
    if (t->network_host && s->egress_ceiling_set)
        return errf(err, errsz,
                    "task.network: \"host\" is refused by this supervisor (its egress ceiling "
                    "allows only named hosts)");
    if (t->egress && !s->egress_ceiling_set)
        return errf(err, errsz,
                    "task.network: this supervisor allows no egress (serve --egress-allow)");
    return task_egress_within(t, s->egress_ceiling_set ? &s->egress_ceiling : NULL, err, errsz);
}

int serve_egress_from_config(struct server *s, char *err, size_t errsz)
{
    const char *lists[2] = {s->cfg.egress_allow, s->cfg.egress_resolve};
    for (int k = 0; k < 2; k++) {
        char buf[4096];
        snprintf(buf, sizeof(buf), "%s", lists[k]);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ", \t\n", &save); tok;
             tok = strtok_r(NULL, ", \t\n", &save)) {
            if (serve_egress_option(s, k == 1, tok, err, errsz) < 0) {
                char tmp[ERR_MSG_MAX];
                snprintf(tmp, sizeof(tmp), "%s", err);
                return errf(err, errsz, "%s: %s",
                            k ? "OPENHANDS_EGRESS_RESOLVE" : "OPENHANDS_EGRESS_ALLOW", tmp);
            }
        }
    }
    return 0;
}
