/* Progress lines of the flashgpt verbs (see cli.h): a phase name, a count or
 * bytes with their rate, on one stderr line rewritten with "\r" and erased
 * with the ANSI "erase line" sequence, which every terminal emulator in use
 * understands. Nothing at all is written when stderr is not a terminal. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Back to the start of the line and erase it. */
static const char ERASE[] = "\r\033[K";

void cli_progress_start(cli_progress *p, const char *what)
{
    /* a short copy: a line longer than the terminal wraps, and "\r" would
     * then rewrite only its last part */
    snprintf(p->what, sizeof p->what, "%s", what);
    p->start = cli_now();
    p->last = 0;
    p->tty = isatty(fileno(stderr));
    p->shown = 0;
    if (!p->tty) return;
    fprintf(stderr, "%s%s ...", ERASE, p->what);
    fflush(stderr);
    p->shown = 1;
}

/* 1 when a new line is due: the first update, then every 0.1 s. */
static int due(cli_progress *p, int last_one)
{
    if (!p->tty) return 0;
    const double now = cli_now();
    if (!last_one && p->last > 0 && now - p->last < 0.1) return 0;
    p->last = now;
    return 1;
}

void cli_progress_update(cli_progress *p, long done, long total)
{
    if (!due(p, done == total)) return;
    fprintf(stderr, "%s%s %ld/%ld (%.1f s)", ERASE, p->what, done, total,
            cli_now() - p->start);
    fflush(stderr);
    p->shown = 1;
}

void cli_progress_bytes(cli_progress *p, uint64_t done, uint64_t total)
{
    if (!due(p, done == total)) return;
    /* one unit for both numbers, chosen by the total */
    const double scale = total >= 1000000000 ? 1e9 : total >= 1000000 ? 1e6 : 1e3;
    const char *unit = total >= 1000000000 ? "GB" : total >= 1000000 ? "MB" : "kB";
    const double seconds = cli_now() - p->start;
    fprintf(stderr, "%s%s %.2f/%.2f %s", ERASE, p->what, (double)done / scale,
            (double)total / scale, unit);
    if (seconds > 0) fprintf(stderr, ", %.0f MB/s", (double)done / 1e6 / seconds);
    fflush(stderr);
    p->shown = 1;
}

void cli_progress_end(cli_progress *p)
{
    if (p->shown) {
        fputs(ERASE, stderr);
        fflush(stderr);
    }
    p->shown = 0;
}

static void on_load_progress(uint64_t done, uint64_t total, void *user)
{
    cli_progress_bytes(user, done, total);
}

fg_status cli_load_model(fg_model **model, const char *path)
{
    cli_progress p;
    const char *slash = strrchr(path, '/');
    char what[64];
    /* the last path component names the file (or the folder, for Hugging Face) */
    const char *name = slash && slash[1] ? slash + 1 : path;
    snprintf(what, sizeof what, "loading %.40s", name); /* fits 80 columns */
    cli_progress_start(&p, what);
    const fg_status st = fg_model_load_with_progress(model, path, on_load_progress, &p);
    cli_progress_end(&p);
    return st;
}
