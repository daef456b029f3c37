/*
 * enclave_pal.h - Enclave Runtime PAL API, versions 1, 2 and 3.
 *
 * A PAL (platform abstraction layer, conventionally named liberpal-<name>.so) is a shared
 * library through which an OCI runtime (rune) drives an enclave runtime: it is dlopen()ed with
 * RTLD_NOW, initialised once, asked to run processes, signalled, and destroyed. This header is
 * ABI-compatible with Inclavare Containers' rune and its PALs (skeleton, Occlum, ...): the
 * structures use natural C alignment and are NOT packed.
 *
 * Writing a PAL: define ENCLAVE_PAL_API_VERSION to 1, 2 or 3 before including this header to
 * get the prototypes of that version, then define those functions with default visibility.
 * Without ENCLAVE_PAL_API_VERSION only the types and constants are declared (for runtimes that
 * look the functions up with dlsym()).
 *
 * Version negotiation: the runtime calls pal_get_version(); a PAL that does not export it is
 * version 1. A version the runtime does not support (above PAL_API_VERSION_MAX) is refused.
 *
 * Symbols: v1 requires pal_init, pal_exec and pal_destroy. v2 and v3 also require
 * pal_create_process; pal_get_version should be exported (else the PAL is taken for v1).
 * pal_kill (v2, v3) and pal_get_local_report (v3) are optional: the runtime reports
 * "not implemented" when it needs a missing one.
 *
 * Return values: pal_init, pal_create_process, pal_exec, pal_kill and pal_destroy fail only
 * when they return a negative value; 0 and positive values are success. Return -errno:
 *   -ENOENT   a file the runtime needs (enclave image, payload) does not exist
 *   -EACCES   permission denied (device, file, signature policy)
 *   -ENOEXEC  the payload or enclave image is not in a format the runtime can run
 *   -ENOMEM   out of (enclave) memory
 *   -EINVAL   invalid argument: bad args string, NULL pointer, unknown pid, call out of order
 *   -ENOSYS   the operation is not implemented by this PAL
 * pal_get_local_report is stricter: it succeeds only when it returns exactly 0.
 *
 * Threads: the runtime may call pal_kill while another thread is blocked in pal_exec, and may
 * create further processes while one runs. Strings and arrays passed in are owned by the
 * runtime, valid only during the call, and must not be modified.
 *
 * Note: the pal_stdio_fds members are named stdin/stdout/stderr, as upstream. glibc's <stdio.h>
 * macros for those names expand to themselves, so they coexist; musl's expand to "(stdin)",
 * which still declares the members but breaks "fds->stdin" in a file that includes <stdio.h>:
 * #undef them there, or access the members in a file that does not include <stdio.h>.
 */
#ifndef ENCLAVE_PAL_H
#define ENCLAVE_PAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* API versions, as returned by pal_get_version(). */
#define PAL_API_VERSION_1 1
#define PAL_API_VERSION_2 2
#define PAL_API_VERSION_3 3
/* Highest version a runtime built against this header supports. */
#define PAL_API_VERSION_MAX PAL_API_VERSION_3

/* Size of the report buffer given to pal_get_local_report (an SGX REPORT). */
#define PAL_REPORT_LEN 432
/* Size of an SGX TARGETINFO, the usual target_info of pal_get_local_report. */
#define PAL_TARGET_INFO_LEN 512
/* pal_attr_v3_t.fd when there is no pre-built enclave. */
#define PAL_NO_ENCLAVE_FD (-1)

/* pal_init attributes, v1 and v2. */
typedef struct {
	const char *args;      /* enclave.runtime.args, e.g. "debug no-epm" */
	const char *log_level; /* trace, debug, info, warning, error, fatal, panic or off */
} pal_attr_v1_t;

/* pal_init attributes, v3. On LP64: size 32, fd at offset 16, addr at 24. */
typedef struct {
	pal_attr_v1_t attr_v1;
	int fd;        /* device fd of a pre-built enclave to adopt, or PAL_NO_ENCLAVE_FD */
	uint64_t addr; /* base address the pre-built enclave is mapped at, or 0 */
} pal_attr_v3_t;

/* The payload's stdio, as fds of the calling process. */
typedef struct {
	int stdin, stdout, stderr;
} pal_stdio_fds;

/* pal_create_process argument (v2, v3). On LP64: size 40. */
typedef struct {
	char *path;           /* executable: argv[0] as given by the runtime */
	char **argv;          /* NULL-terminated, argv[0] included */
	char **env;           /* NULL-terminated KEY=VALUE strings */
	pal_stdio_fds *stdio; /* payload stdin/stdout/stderr */
	int *pid;             /* out: id of the new process for pal_exec/pal_kill */
} pal_create_process_args;

/* pal_exec argument (v2, v3). On LP64: exit_value at offset 8. */
typedef struct {
	int pid;         /* as returned by pal_create_process */
	int *exit_value; /* out: the payload's exit status */
} pal_exec_args;

#if defined(ENCLAVE_PAL_API_VERSION)
#if ENCLAVE_PAL_API_VERSION < PAL_API_VERSION_1 || ENCLAVE_PAL_API_VERSION > PAL_API_VERSION_MAX
#error "ENCLAVE_PAL_API_VERSION must be 1, 2 or 3"
#endif

#if ENCLAVE_PAL_API_VERSION >= PAL_API_VERSION_2
/* Returns the API version this PAL implements (2 or 3). Called before pal_init. */
int pal_get_version(void);
#endif

#if ENCLAVE_PAL_API_VERSION == PAL_API_VERSION_3
/* Creates the enclave, or adopts the pre-built one in attr->fd/attr->addr. Called once. */
int pal_init(pal_attr_v3_t *attr);
#else
/* Creates the enclave. Called once. */
int pal_init(pal_attr_v1_t *attr);
#endif

#if ENCLAVE_PAL_API_VERSION == PAL_API_VERSION_1
/* Runs path with argv (NULL-terminated; argv[0] == path) and the given stdio until it exits;
 * stores its exit status in *exit_code. v1 passes no environment. */
int pal_exec(const char *path, const char *argv[], pal_stdio_fds *stdio, int *exit_code);
#else
/* Starts a process; stores its id in *args->pid. */
int pal_create_process(pal_create_process_args *args);
/* Waits for process args->pid to exit; stores its exit status in *args->exit_value. */
int pal_exec(pal_exec_args *args);
/* Sends sig to process pid; pid -1 means every process of the enclave runtime. Optional. */
int pal_kill(int pid, int sig);
#endif

/* Destroys the enclave; the last call. */
int pal_destroy(void);

#if ENCLAVE_PAL_API_VERSION == PAL_API_VERSION_3
/* Produces a local attestation report for target_info (target_info_len bytes, normally an SGX
 * TARGETINFO of PAL_TARGET_INFO_LEN) into report, whose size is *report_len on input
 * (PAL_REPORT_LEN from rune); stores the length written in *report_len. Returns 0 on success,
 * anything else is failure. Optional. */
int pal_get_local_report(void *target_info, int target_info_len, void *report, int *report_len);
#endif
#endif /* ENCLAVE_PAL_API_VERSION */

#ifdef __cplusplus
}
#endif

#endif /* ENCLAVE_PAL_H */
