/* tool_bash: the persistent bash session behind execute_bash. Owns one bash process (its
 * own session and process group), its pipes and a private scratch directory. Never lets a
 * command read the session's stdin, never buffers more than a bounded amount of output,
 * never passes any fd of the agent (the cell channel) to bash. */
#ifndef AGENTBOX_TOOL_BASH_H
#define AGENTBOX_TOOL_BASH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TOOL_BASH_DEFAULT_TIMEOUT_S 120.0
#define TOOL_BASH_MAX_TIMEOUT_S     86400.0
#define TOOL_BASH_CLIP_CHARS        30000 /* OpenHands' MAX_CMD_OUTPUT_SIZE */
#define TOOL_BASH_MAX_COMMAND_BYTES (1u << 20)
/* After a timeout the killed command's shell gets this long to print its end marker before
 * the session itself is killed and restarted. */
#define TOOL_BASH_KILL_GRACE_MS 1000

struct tool_bash_opts {
    const char *cwd;       /* initial working directory; NULL = the agent's own */
    const char *tmp_dir;   /* parent of the private scratch dir; NULL = $TMPDIR or /tmp */
    size_t clip_chars;     /* 0 = TOOL_BASH_CLIP_CHARS */
    const char *bash_path; /* NULL = /bin/bash */
    /* Checked every 50 ms while a command runs: when it becomes non-zero the command is
     * killed as on a timeout and the call returns (cancelled = true). May be NULL. */
    const volatile sig_atomic_t *cancel;
    /* monotonic_s() time when the task's wall clock ends: no command's timeout reaches past
     * it (the task's clock always wins). 0 = none. */
    double task_deadline_s;
};

struct tool_bash_result {
    char *output;  /* valid UTF-8, clipped, malloc'd; never NULL after success */
    char *cwd;     /* working directory after the command (malloc'd, may be NULL) */
    int exit_code; /* the command's $?, or -1 when timed out or cancelled */
    bool timed_out;
    bool cancelled;
    bool restarted;     /* the shell had to be restarted (it exited or was stuck itself) */
    size_t bytes_total; /* output bytes the command produced */
    size_t bytes_cut;   /* bytes left out of `output` by clipping */
    double timeout_s;   /* the timeout that applied */
    double elapsed_s;   /* seconds from the start of the command to its kill (cancelled) */
    bool task_deadline; /* that timeout was cut short by the task's deadline */
};

struct tool_bash;

/* Starts `bash --noprofile --norc` with PAGER=cat, GIT_PAGER=cat, TERM=dumb, empty PS1. */
int tool_bash_start(struct tool_bash **out, const struct tool_bash_opts *opts, char *err,
                    size_t errsz);
/* Runs one command in the session (cwd and exported variables carry over). timeout_s <= 0
 * means TOOL_BASH_DEFAULT_TIMEOUT_S. A command that times out is killed with everything it
 * started; the session stays usable. Returns -1 only when the session cannot run anything
 * (then err says why); a command's failure is a result, not an error. */
int tool_bash_run(struct tool_bash *b, const char *command, double timeout_s,
                  struct tool_bash_result *res, char *err, size_t errsz);
/* The observation text the model sees, OpenHands style: output, then
 * "[Current working directory: D]" and "[Command finished with exit code N]" (or the
 * timeout note). malloc'd; NULL if out of memory. */
char *tool_bash_observation(const struct tool_bash_result *res);
void tool_bash_result_free(struct tool_bash_result *res);
/* The shell's pid (changes after a restart). */
pid_t tool_bash_pid(const struct tool_bash *b);
/* Kills the shell and every process still in its session (background jobs too), reaps the
 * shell, removes the scratch dir and frees b. NULL is fine. */
void tool_bash_stop(struct tool_bash *b);

#endif
