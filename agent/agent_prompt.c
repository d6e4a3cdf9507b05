/* agent_prompt: the system prompt's network sentence for a cell with egress (see
 * agent_prompt.h). */
#include "agent_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define NO_NETWORK     "There is no network access."
#define HOSTS_MAX      64
#define HOST_CHARS_MAX 300

char *agent_prompt_with_network(const char *base, const cJSON *task)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(task, "network_allow");
    const char *at = strstr(base, NO_NETWORK);
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0 || !at)
        return NULL;
    struct strbuf sb = STRBUF_INIT(strlen(base) + HOSTS_MAX * (HOST_CHARS_MAX + 8) + 4096);
    strbuf_add(&sb, base, (size_t)(at - base));
    strbuf_printf(&sb, "Network access is limited to these hosts, through the HTTP proxy the "
                       "environment names (HTTPS_PROXY; pip, npm, git and curl use it): ");
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        if (!cJSON_IsString(it) || strlen(it->valuestring) > HOST_CHARS_MAX || n >= HOSTS_MAX)
            continue;
        strbuf_printf(&sb, "%s%s", n++ ? ", " : "", it->valuestring);
    }
    strbuf_printf(&sb, "; anything else is refused.%s", at + strlen(NO_NETWORK));
    return strbuf_steal(&sb);
}
