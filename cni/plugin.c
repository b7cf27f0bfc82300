/*
 * tenet: the compiled front of the Tenet CNI plugin (cni/plugin.py is the plugin itself).
 *
 * Why C: a runtime waits for the plugin of every pod, and measured on a node (bench/cni.py) most of a
 * Python plugin's ADD was the interpreter starting (`python3 -I -S`: 15-30 ms), more than the agent's own
 * work. This program starts in about a millisecond and decides nothing itself: it forwards the CNI_*
 * environment and stdin to the node's Tenet agent in one "EXEC" request of the agent socket's protocol
 * (cni/protocol.py), where cni.plugin runs the verb exactly as the Python plugin would (cni.plugin.forwarded),
 * and prints the answer's output with the answer's exit status. Every check, message and error code is
 * that code's, so both plugins behave alike.
 *
 * Whenever it cannot do that, it runs the Python plugin instead (execv with the same environment and stdin,
 * replayed from a memfd), which then does everything as it always did: VERSION and unknown verbs (which need
 * no agent), a configuration this file's small scanner does not read plainly (not one JSON object, an
 * agentSocket that is not a plain ASCII string), and an agent that cannot be connected to (absent, not
 * listening, its backlog full for `timeout` seconds). Once a request is sent, failures are reported as
 * cni/protocol.py's call() reports them (code 11; for STATUS, code 50 as cni/plugin.py's _status does).
 *
 * Built by cni/install.py (`tenet-agent install-cni`, `make cni-plugin`) with these macros, C string
 * literals: TENET_PYTHON, the interpreter, and TENET_FALLBACK, the `python -c` code that runs cni.plugin.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef TENET_PYTHON
#error "define TENET_PYTHON (the interpreter) and TENET_FALLBACK (its -c code)"
#endif

#define DEFAULT_SOCKET "/run/tenet/agent.sock" /* cni/protocol.py DEFAULT_SOCKET */
#define LATEST_VERSION "1.1.0"                 /* cni/config.py LATEST_VERSION */
#define DEFAULT_TIMEOUT 30.0                   /* cni/config.py DEFAULT_TIMEOUT, s */
#define STATUS_TIMEOUT 5.0                     /* cni/config.py STATUS_TIMEOUT, s */
#define MAX_TIMEOUT 3600.0                     /* the largest timeout cni/config.py accepts, s */
#define MAX_MESSAGE (1 << 20)                  /* cni/protocol.py MAX_MESSAGE, bytes */
#define MAX_FORWARDED (MAX_MESSAGE / 8)        /* stdin beyond this (escaped up to 6x) goes to Python */

extern char **environ;

static const char *const SUPPORTED_VERSIONS[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};

/* A growable byte buffer; running out of memory ends the process (the runtime sees a failed plugin). */
struct buffer {
    char *data;
    size_t len, cap;
};

static void reserve(struct buffer *b, size_t more) {
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        abort();
    b->data = data;
    b->cap = cap;
}

static void append(struct buffer *b, const char *text, size_t len) {
    reserve(b, len);
    memcpy(b->data + b->len, text, len);
    b->len += len;
}

static void append_str(struct buffer *b, const char *text) { append(b, text, strlen(text)); }

/* `text` as a JSON string. Bytes from 0x80 up pass unchanged: the agent decodes the request as UTF-8 with
 * surrogateescape, so any bytes come back exactly as os.environ and stdin would have given them. */
static void append_json_string(struct buffer *b, const char *text, size_t len) {
    static const char hex[] = "0123456789abcdef";
    reserve(b, len * 6 + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            b->data[b->len++] = '\\';
            b->data[b->len++] = (char)c;
        } else if (c < 0x20) {
            memcpy(b->data + b->len, "\\u00", 4);
            b->data[b->len + 4] = hex[c >> 4];
            b->data[b->len + 5] = hex[c & 15];
            b->len += 6;
        } else {
            b->data[b->len++] = (char)c;
        }
    }
    b->data[b->len++] = '"';
}

/* Print a CNI error object as cni/plugin.py prints it: {"cniVersion", "code", "msg", "details"}. */
static void print_error(const char *version, int code, const char *msg, const char *details) {
    struct buffer out = {0};
    char number[16];
    append_str(&out, "{\"cniVersion\": ");
    append_json_string(&out, version, strlen(version));
    snprintf(number, sizeof(number), "%d", code);
    append_str(&out, ", \"code\": ");
    append_str(&out, number);
    append_str(&out, ", \"msg\": ");
    append_json_string(&out, msg, strlen(msg));
    append_str(&out, ", \"details\": ");
    append_json_string(&out, details, strlen(details));
    append_str(&out, "}\n");
    fwrite(out.data, 1, out.len, stdout);
    fflush(stdout);
}

/* ---- the Python plugin, when this one cannot forward ----------------------------------------------- */

static struct buffer stdin_data;

/* Run the Python plugin with this process's environment and the stdin already read; never returns. */
static void run_python(void) {
    int fd = memfd_create("tenet-cni-stdin", 0);
    if (fd >= 0) {
        size_t done = 0;
        while (done < stdin_data.len) {
            ssize_t n = write(fd, stdin_data.data + done, stdin_data.len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += (size_t)n;
        }
        if (done == stdin_data.len && lseek(fd, 0, SEEK_SET) == 0 && dup2(fd, 0) == 0) {
            close(fd);
            char *argv[] = {(char *)TENET_PYTHON, (char *)"-IS", (char *)"-c", (char *)TENET_FALLBACK, NULL};
            execv(TENET_PYTHON, argv);
        }
    }
    /* Not a CNI answer anyone should see: the interpreter is gone or the kernel refused a memfd. */
    print_error(LATEST_VERSION, 999, "cannot run the Tenet plugin " TENET_PYTHON, strerror(errno));
    exit(1);
}

/* ---- the few configuration fields needed to reach the agent ----------------------------------------- */

struct conf {
    char *socket;        /* agentSocket, or NULL for the default */
    const char *version; /* cniVersion if supported, else LATEST_VERSION: the version errors answer in */
    double timeout;      /* seconds */
};

static const char *skip_space(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past a JSON string starting at `p` (its '"'); NULL if it does not end. `*escaped`: it has a backslash. */
static const char *skip_string(const char *p, const char *end, int *escaped) {
    *escaped = 0;
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\') {
            *escaped = 1;
            p++;
        } else if ((unsigned char)*p < 0x20) {
            return NULL;
        }
    }
    return NULL;
}

/* Past one JSON value at `p`, or NULL. Nested values are only balanced, not checked: the agent's
 * parser judges the document; this scan only has to find the top-level fields it names. */
static const char *skip_value(const char *p, const char *end) {
    int escaped, depth = 0;
    if (p >= end)
        return NULL;
    if (*p != '{' && *p != '[' && *p != '"') { /* a number, true, false, null (or junk the agent reports) */
        while (p < end && !strchr(",}] \t\n\r", *p))
            p++;
        return p;
    }
    while (p < end) {
        if (*p == '"') {
            if ((p = skip_string(p, end, &escaped)) == NULL)
                return NULL;
        } else {
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']')
                depth--;
            p++;
        }
        if (depth == 0)
            return p;
    }
    return NULL;
}

/* Read agentSocket, cniVersion and timeout from the top level of the configuration (the last of repeated
 * keys wins, as in Python); 0 if it is not one JSON object read plainly, and the Python plugin should judge. */
static int read_conf(const char *p, const char *end, struct conf *conf) {
    int escaped;
    conf->socket = NULL;
    conf->version = LATEST_VERSION;
    conf->timeout = DEFAULT_TIMEOUT;
    p = skip_space(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = skip_space(p, end);
    if (p < end && *p == '}')
        return skip_space(p + 1, end) == end;
    for (;;) {
        if (p >= end || *p != '"')
            return 0;
        const char *key = p + 1, *key_end = skip_string(p, end, &escaped);
        if (key_end == NULL || escaped)
            return 0;
        size_t key_len = (size_t)(key_end - 1 - key);
        p = skip_space(key_end, end);
        if (p >= end || *p++ != ':')
            return 0;
        const char *value = skip_space(p, end), *value_end = skip_value(value, end);
        if (value_end == NULL)
            return 0;
#define IS_KEY(name) (key_len == sizeof(name) - 1 && memcmp(key, name, key_len) == 0)
        if (IS_KEY("agentSocket")) {
            if (*value != '"' || skip_string(value, end, &escaped) == NULL || escaped)
                return 0;
            free(conf->socket);
            conf->socket = strndup(value + 1, (size_t)(value_end - 2 - value));
            for (const char *c = conf->socket; *c; c++)
                if ((unsigned char)*c >= 0x80) /* Python would print it \u-escaped: leave it to Python */
                    return 0;
        } else if (IS_KEY("cniVersion")) {
            conf->version = LATEST_VERSION;
            for (size_t i = 0; i < sizeof(SUPPORTED_VERSIONS) / sizeof(*SUPPORTED_VERSIONS); i++) {
                size_t len = strlen(SUPPORTED_VERSIONS[i]);
                if ((size_t)(value_end - value) == len + 2 && *value == '"' &&
                    memcmp(value + 1, SUPPORTED_VERSIONS[i], len) == 0)
                    conf->version = SUPPORTED_VERSIONS[i];
            }
        } else if (IS_KEY("timeout")) { /* a bad one is the agent's to report (code 7): wait the default */
            char number[64] = "", *stop;
            size_t len = (size_t)(value_end - value);
            if (len < sizeof(number))
                memcpy(number, value, len);
            double seconds = strtod(number, &stop);
            conf->timeout = (len && *stop == '\0' && seconds > 0 && seconds <= MAX_TIMEOUT) ? seconds
                                                                                             : DEFAULT_TIMEOUT;
        }
#undef IS_KEY
        p = skip_space(value_end, end);
        if (p < end && *p == ',') {
            p = skip_space(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            return skip_space(p + 1, end) == end;
        return 0;
    }
}

/* ---- talking to the agent --------------------------------------------------------------------------- */

static const char *command;
static struct conf conf;

/* Print a CNI error as cni/plugin.py prints it and exit 1. Transport failures are code 11, and STATUS
 * turns them into code 50, "Tenet is not ready: ...", as cni/plugin.py's _status does. */
static void fail(const char *msg, const char *details) {
    char text[256];
    int status = strcmp(command, "STATUS") == 0;
    snprintf(text, sizeof(text), "%s%s", status ? "Tenet is not ready: " : "", msg);
    print_error(conf.version, status ? 50 : 11, text, details);
    exit(1);
}

static void fail_errno(const char *path, int error) {
    char details[512];
    if (error == EAGAIN || error == EWOULDBLOCK) { /* SO_RCVTIMEO/SO_SNDTIMEO ran out */
        char msg[128];
        snprintf(msg, sizeof(msg), "the Tenet agent did not answer within %g s", conf.timeout);
        fail(msg, path);
    }
    snprintf(details, sizeof(details), "%s: [Errno %d] %s", path, error, strerror(error));
    fail("the Tenet agent could not be reached", details);
}

/* The request: {"verb": "EXEC", "env": {CNI_* variables}, "stdin": the configuration}. */
static void build_request(struct buffer *request) {
    int first = 1;
    append_str(request, "{\"verb\": \"EXEC\", \"env\": {");
    for (char **variable = environ; *variable; variable++) {
        const char *equals = strchr(*variable, '=');
        if (strncmp(*variable, "CNI_", 4) != 0 || equals == NULL)
            continue;
        if (!first)
            append_str(request, ", ");
        first = 0;
        append_json_string(request, *variable, (size_t)(equals - *variable));
        append_str(request, ": ");
        append_json_string(request, equals + 1, strlen(equals + 1));
    }
    append_str(request, "}, \"stdin\": ");
    append_json_string(request, stdin_data.data, stdin_data.len);
    append_str(request, "}");
}

/* Print the agent's answer, {"exit": N, "stdout": OUTPUT} laid out as cni.plugin.forwarded makes it (OUTPUT
 * null: print nothing), and return N. */
static int print_answer(const char *path, const struct buffer *answer) {
    static const char head[] = "{\"exit\": ", middle[] = ", \"stdout\": ";
    const char *p = answer->data, *end = answer->data + answer->len;
    char details[512];
    if (answer->len == 0) { /* what Python's JSON parser says of an empty answer (cni/protocol.py) */
        snprintf(details, sizeof(details), "%s: Expecting value: line 1 column 1 (char 0)", path);
        fail("the Tenet agent could not be reached", details);
    }
    int status = -1;
    if ((size_t)(end - p) > sizeof(head) && memcmp(p, head, sizeof(head) - 1) == 0) {
        p += sizeof(head) - 1;
        for (status = 0; p < end && *p >= '0' && *p <= '9' && status < 256; p++)
            status = status * 10 + (*p - '0');
    }
    if (status < 0 || status > 255 || (size_t)(end - p) < sizeof(middle) + 1 ||
        memcmp(p, middle, sizeof(middle) - 1) != 0 || end[-1] != '}') {
        snprintf(details, sizeof(details), "%s: the answer is not a plugin's output (is the agent older?)", path);
        fail("the Tenet agent could not be reached", details);
    }
    p += sizeof(middle) - 1;
    size_t len = (size_t)(end - 1 - p);
    if (!(len == 4 && memcmp(p, "null", 4) == 0)) {
        if (fwrite(p, 1, len, stdout) != len || fputs("\n", stdout) == EOF)
            status = status ? status : 1;
    }
    if (fflush(stdout) != 0)
        status = status ? status : 1;
    return status;
}

int main(void) {
    /* stdin, all of it: it is forwarded, or replayed to the Python plugin. */
    for (;;) {
        reserve(&stdin_data, 65536);
        ssize_t n = read(0, stdin_data.data + stdin_data.len, stdin_data.cap - stdin_data.len);
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) { /* as cni/plugin.py reports it (code 5, in the latest version: nothing was read) */
            char details[256];
            snprintf(details, sizeof(details), "[Errno %d] %s", errno, strerror(errno));
            print_error(LATEST_VERSION, 5, "cannot read the network configuration from stdin", details);
            return 1;
        }
        stdin_data.len += (size_t)n;
    }

    /* Only the verbs the agent serves; VERSION and everything else is the Python plugin's. */
    command = getenv("CNI_COMMAND");
    if (command == NULL || !(strcmp(command, "ADD") == 0 || strcmp(command, "DEL") == 0 ||
                             strcmp(command, "CHECK") == 0 || strcmp(command, "STATUS") == 0 ||
                             strcmp(command, "GC") == 0))
        run_python();
    if (stdin_data.len > MAX_FORWARDED || !read_conf(stdin_data.data, stdin_data.data + stdin_data.len, &conf))
        run_python();
    if (strcmp(command, "STATUS") == 0 && conf.timeout > STATUS_TIMEOUT)
        conf.timeout = STATUS_TIMEOUT;

    const char *path = conf.socket && *conf.socket ? conf.socket : DEFAULT_SOCKET;
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (conf.socket != NULL && *conf.socket == '\0') /* empty: the agent reports it (code 7) only in Python */
        run_python();
    if (strlen(path) >= sizeof(address.sun_path))
        run_python();
    memcpy(address.sun_path, path, strlen(path) + 1);

    /* Blocking, with the configuration's timeout on each step: connect waits while the agent's backlog is
     * full (cni/protocol.py waits too), reads wait at most `timeout` for the agent's answer. */
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        run_python();
    struct timeval timeout = {.tv_sec = (time_t)conf.timeout};
    timeout.tv_usec = (suseconds_t)((conf.timeout - (double)timeout.tv_sec) * 1e6);
    if (timeout.tv_sec == 0 && timeout.tv_usec == 0)
        timeout.tv_usec = 1;
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    int connected;
    do
        connected = connect(sock, (struct sockaddr *)&address, sizeof(address));
    while (connected != 0 && errno == EINTR);
    if (connected != 0) { /* no agent to ask: the Python plugin checks the request and says so itself */
        close(sock);
        run_python();
    }

    struct buffer request = {0}, answer = {0};
    build_request(&request);
    for (size_t sent = 0; sent < request.len;) {
        ssize_t n = send(sock, request.data + sent, request.len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail_errno(path, errno);
        sent += (size_t)n;
    }
    shutdown(sock, SHUT_WR);
    for (;;) {
        reserve(&answer, 65536);
        ssize_t n = recv(sock, answer.data + answer.len, answer.cap - answer.len, 0);
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail_errno(path, errno);
        answer.len += (size_t)n;
        if (answer.len > MAX_MESSAGE) {
            char details[512];
            snprintf(details, sizeof(details), "%s: message longer than %d bytes", path, MAX_MESSAGE);
            fail("the Tenet agent could not be reached", details);
        }
    }
    close(sock);
    return print_answer(path, &answer);
}
