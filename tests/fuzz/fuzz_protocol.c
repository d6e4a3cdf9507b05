/* fuzz_protocol: libFuzzer target for the socket protocol's request parser (the first code
 * that touches a client's bytes) and, for submits, the task validator behind it. Any crash,
 * leak, out-of-bounds access or undefined behaviour is a finding. Run by `make fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "protocol.h"
#include "task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        log_set_level(LOG_ERROR);
        quiet = 1;
    }
    struct request req;
    enum protocol_error code;
    char err[512];
    if (protocol_parse((const char *)data, size, &req, &code, err, sizeof(err)) < 0) {
        /* the error must be a known code with a message, and a reply must be buildable */
        if (!protocol_error_name(code) || !err[0])
            abort();
        free(protocol_error_line(code, err));
        return 0;
    }
    if (req.op == OP_SUBMIT) {
        struct task t;
        if (task_parse(req.task, &t, err, sizeof(err)) == 0) {
            if (!task_id_is_valid(t.id))
                abort();
            task_free(&t);
        } else if (strncmp(err, "task", 4) != 0) {
            abort(); /* every refusal names the field, starting at "task" */
        }
    }
    if ((req.op == OP_STATUS || req.op == OP_WAIT || req.op == OP_CANCEL) &&
        !task_id_is_valid(req.id))
        abort();
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "op", protocol_op_name(req.op));
    free(protocol_ok_line(f));
    request_free(&req);
    return 0;
}
