/* agent_prompt: the network sentence of the agent's system prompt. A task whose cell has an
 * egress allow-list (the task message's "network_allow", set by the runner) is told which
 * hosts it may reach and how; otherwise the prompt says there is no network. Text only. */
#ifndef AGENT_PROMPT_H
#define AGENT_PROMPT_H

#include <cjson/cJSON.h>

/* base with its "There is no network access." sentence replaced for the task's allow-list;
 * malloc'd, or NULL when nothing changes (no list, or base lacks the sentence). */
char *agent_prompt_with_network(const char *base, const cJSON *task);

#endif
