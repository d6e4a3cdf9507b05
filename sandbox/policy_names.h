/* policy_names: the names a policy file may use, for policy.c and policy_json.c only. */
#ifndef AGENTBOX_POLICY_NAMES_H
#define AGENTBOX_POLICY_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct policy_named {
    const char *name;
    uint64_t value;
};

extern const struct policy_named policy_errno_names[];
extern const struct policy_named policy_constant_names[];
extern const char *const policy_action_names[]; /* indexed by enum policy_action */
extern const char *const policy_op_names[];     /* indexed by the POLICY_OP_* values */
extern const size_t POLICY_ERRNO_NAMES, POLICY_CONSTANT_NAMES, POLICY_ACTION_NAMES, POLICY_OP_NAMES;

/* The index of s in names[0..n) (NULL entries skipped), or -1. */
int policy_name_index(const char *const *names, size_t n, const char *s);

/* The symbolic name of errno value e if the table has it, else NULL. */
const char *policy_errno_name(int e);

#endif
