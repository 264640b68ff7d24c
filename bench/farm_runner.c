/* The farm benchmarks' stand-in runner: a contract-faithful `hexfleet-runner` that does no
 * inference, so the farm's own overhead can be measured.
 *
 * bench/farm_rig.py builds it as `hexfleet-runner` in a folder with a VERSION file and registers
 * that folder as the x86_64 runner bundle; the agent pushes it to the phones and runs it from
 * the contract's fixed template, inside a virtual phone's sandbox. A native program, as the real
 * runner is: its start-up costs about 1 ms, not the 30 ms of a Python process on the host's
 * shared cores. It keeps runner/CONTRACT.md version 2: reads spec.json (its only argument),
 * refuses another version, prints `@progress` lines (generate: `load` 0/1 and 1/1, then `unet`
 * per step), sleeps the seconds in DELAY_FILE (a device path: the rig writes it into every
 * phone's folder; 0 when absent) spread over the steps, writes a valid result.json (a
 * RunnerResultV2, version 2, without outputs) by rename, exits 0. Failure: exit 1 and one stderr
 * line `hexfleet-runner: <reason>`.
 *
 * Build: cc -O2 -o hexfleet-runner bench/farm_runner.c
 * Usage: hexfleet-runner SPEC
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Where the rig puts the run length, as the phone shows it (the sandbox binds /data). */
#define DELAY_FILE "/data/local/tmp/hexfleet-bench-runner-delay-s"

static double now_s(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_file(const char *path, size_t *length) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[len] = '\0';
    *length = len;
    return buf;
}

/* JSON scanning: just enough to find a member of an object and the raw text of its value. */
static size_t skip_ws(const char *s, size_t i, size_t end) {
    while (i < end && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
    return i;
}

static size_t skip_string(const char *s, size_t i, size_t end) { /* s[i] == '"' */
    for (i++; i < end; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return end;
}

static size_t skip_value(const char *s, size_t i, size_t end) {
    if (i >= end) return end;
    if (s[i] == '"') return skip_string(s, i, end);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        while (i < end) {
            if (s[i] == '"') { i = skip_string(s, i, end); continue; }
            if (s[i] == '{' || s[i] == '[') depth++;
            else if (s[i] == '}' || s[i] == ']') {
                if (--depth == 0) return i + 1;
            }
            i++;
        }
        return end;
    }
    while (i < end && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n')
        i++;
    return i;
}

/* The object at s[start] == '{': the raw value of member `key` as [*from, *to), or 0. */
static int member(const char *s, size_t start, size_t end, const char *key, size_t *from,
                  size_t *to) {
    size_t keylen = strlen(key), i = skip_ws(s, start + 1, end);
    while (i < end && s[i] == '"') {
        size_t k0 = i + 1, k1 = skip_string(s, i, end) - 1;
        i = skip_ws(s, k1 + 1, end);
        if (i >= end || s[i] != ':') return 0;
        i = skip_ws(s, i + 1, end);
        size_t v1 = skip_value(s, i, end);
        if (k1 - k0 == keylen && memcmp(s + k0, key, keylen) == 0) {
            *from = i;
            *to = v1;
            return 1;
        }
        i = skip_ws(s, v1, end);
        if (i < end && s[i] == ',') i = skip_ws(s, i + 1, end);
    }
    return 0;
}

/* The number of elements of the array at s[i] == '['. */
static long array_length(const char *s, size_t i, size_t end) {
    long count = 0;
    i = skip_ws(s, i + 1, end);
    while (i < end && s[i] != ']') {
        count++;
        i = skip_ws(s, skip_value(s, i, end), end);
        if (i < end && s[i] == ',') i = skip_ws(s, i + 1, end);
    }
    return count;
}

/* The raw JSON text of a member (a quoted string stays quoted), or `fallback`. */
static char *raw(const char *s, size_t object, size_t end, const char *key, const char *fallback) {
    size_t from, to;
    if (object == (size_t)-1 || !member(s, object, end, key, &from, &to)) return strdup(fallback);
    return strndup(s + from, to - from);
}

static void progress(const char *stage, long step, long total) {
    printf("@progress {\"stage\":\"%s\",\"step\":%ld,\"total\":%ld}\n", stage, step, total);
    fflush(stdout);
}

static double process_age(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return 0.0;
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')');
    if (!p) return 0.0;
    unsigned long long started = 0;
    /* fields after the command: state is field 3, starttime field 22 → the 20th after ')' */
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        if (++field == 22) {
            started = strtoull(tok, NULL, 10);
            break;
        }
    }
    double age = now_s(CLOCK_BOOTTIME) - (double)started / (double)sysconf(_SC_CLK_TCK);
    return age > 0 ? age : 0.0;
}

int main(int argc, char **argv) {
    double started = now_s(CLOCK_MONOTONIC);
    if (argc != 2) {
        fprintf(stderr, "hexfleet-runner: invalid spec: usage: hexfleet-runner SPEC\n");
        return 1;
    }
    const char *spec_path = argv[1];
    size_t length;
    char *spec = read_file(spec_path, &length);
    if (!spec) {
        fprintf(stderr, "hexfleet-runner: invalid spec: cannot read %s: %s\n", spec_path,
                strerror(errno));
        return 1;
    }
    size_t top = skip_ws(spec, 0, length), from, to;
    if (top >= length || spec[top] != '{' || !member(spec, top, length, "version", &from, &to) ||
        to - from != 1 || spec[from] != '2') {
        fprintf(stderr, "hexfleet-runner: invalid spec: version: this runner reads version 2\n");
        return 1;
    }
    if (!member(spec, top, length, "run_id", &from, &to) || spec[from] != '"') {
        fprintf(stderr, "hexfleet-runner: invalid spec: run_id: missing\n");
        return 1;
    }
    char *run_id = strndup(spec + from, to - from);
    size_t params = (size_t)-1;
    if (member(spec, top, length, "params", &from, &to) && spec[from] == '{') params = from;
    char *kind = raw(spec, params, length, "kind", "\"generate\"");
    char *runtime = raw(spec, top, length, "runtime", "\"htp\"");
    char *guidance = raw(spec, params, length, "guidance", "null");
    char *scheduler = raw(spec, params, length, "scheduler", "null");
    char *htp_arch = strcmp(runtime, "\"htp\"") == 0 ? raw(spec, top, length, "htp_arch", "null")
                                                     : strdup("null");
    /* generate: one sampler step per element of params.steps; benchmark: its iterations */
    long steps = 1;
    if (params != (size_t)-1 && member(spec, params, length, "steps", &from, &to) &&
        spec[from] == '[')
        steps = array_length(spec, from, to);
    else if (params != (size_t)-1 && member(spec, params, length, "iterations", &from, &to))
        steps = strtol(spec + from, NULL, 10);
    if (steps < 1) steps = 1;

    double delay = 0.0;
    size_t delay_length;
    char *delay_text = read_file(DELAY_FILE, &delay_length);
    if (delay_text) {
        delay = strtod(delay_text, NULL);
        if (delay < 0) delay = 0.0;
    }

    progress("load", 0, 1);
    progress("load", 1, 1);
    double load_s = now_s(CLOCK_MONOTONIC) - started;
    double *step_times = calloc((size_t)steps, sizeof(double)), sum = 0.0;
    for (long step = 1; step <= steps; step++) {
        double mark = now_s(CLOCK_MONOTONIC), wait = delay / (double)steps;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        step_times[step - 1] = now_s(CLOCK_MONOTONIC) - mark;
        sum += step_times[step - 1];
        progress("unet", step, steps);
    }

    /* result.json next to the spec, written whole and renamed into place */
    size_t dir_len = strlen(spec_path);
    while (dir_len > 0 && spec_path[dir_len - 1] != '/') dir_len--;
    char tmp_path[4096], result_path[4096];
    snprintf(tmp_path, sizeof tmp_path, "%.*sresult.json.tmp", (int)dir_len, spec_path);
    snprintf(result_path, sizeof result_path, "%.*sresult.json", (int)dir_len, spec_path);
    FILE *out = fopen(tmp_path, "w");
    if (!out) {
        fprintf(stderr, "hexfleet-runner: cannot write %s: %s\n", tmp_path, strerror(errno));
        return 1;
    }
    fprintf(out,
            "{\"version\":2,\"run_id\":%s,\"kind\":%s,\"runtime\":%s,\"htp_arch\":%s,"
            "\"simulated\":true,\"timings\":{\"load_s\":%.6f,\"text_encoder_s\":[],"
            "\"unet_steps_s\":[",
            run_id, kind, runtime, htp_arch, load_s);
    for (long step = 0; step < steps; step++)
        fprintf(out, "%s%.6f", step ? "," : "", step_times[step]);
    fprintf(out,
            "],\"unet_step_mean_s\":%.6f,\"vae_decoder_s\":[],\"images\":[],\"total_s\":%.6f,"
            "\"process_s\":%.6f,\"stand_in\":true},"
            "\"metrics\":{\"steps\":%ld,\"guidance\":%s,\"scheduler\":%s},\"outputs\":[],"
            "\"runner\":\"hexfleet-runner stand-in (bench/farm_runner.c), no inference\"}",
            sum / (double)steps, now_s(CLOCK_MONOTONIC) - started, process_age(), steps, guidance,
            scheduler);
    if (fclose(out) != 0 || rename(tmp_path, result_path) != 0) {
        fprintf(stderr, "hexfleet-runner: cannot write the result: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
