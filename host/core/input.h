/* Opening input files safely (host/core/input.c), for every loader and
 * tokenizer: a path from the user may name a FIFO, a device or a huge file.
 *
 * Inputs are opened with O_NONBLOCK (opening a FIFO would otherwise wait
 * for a writer forever) and O_CLOEXEC, then fstat decides on the opened
 * descriptor, never on the name, so the check cannot race with a rename:
 * anything but a regular file is refused with its kind and path named.
 * Whole-file reads are bounded by what the format allows, checked against
 * the size before any byte is read. Messages: "<fn>: <path>: <problem>". */
#ifndef FLASHGPT_HOST_INPUT_H
#define FLASHGPT_HOST_INPUT_H

#include "check.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a regular file for reading: *fd (blocking mode restored) and its
 * size. FG_ERR_IO when missing, unreadable, or not a regular file. */
fg_status fgi_open_input(const char *fn, const char *path, int *fd, uint64_t *size);

/* FG_ERR_FORMAT "is N bytes, over the M-byte limit for <what>" when
 * size > max_bytes. */
fg_status fgi_check_input_size(const char *fn, const char *path, uint64_t size,
                               uint64_t max_bytes, const char *what);

/* Reads bytes [0, size) of fd into a new buffer with a NUL after them;
 * FG_ERR_IO if the file no longer holds them (it changed). */
fg_status fgi_read_input(const char *fn, const char *path, int fd, uint64_t size,
                         char **data);

/* fgi_open_input + fgi_check_input_size + fgi_read_input + close. */
fg_status fgi_load_input(const char *fn, const char *path, uint64_t max_bytes,
                         const char *what, char **data, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_INPUT_H */
