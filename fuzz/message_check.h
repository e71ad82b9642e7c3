/* Shared check of every fuzz target: whatever the input, the last error
 * message is one line of printable ASCII (issue 17: names and strings from
 * files are quoted and escaped, never copied raw into a message, where a
 * newline would split it and an escape sequence drive the terminal). */
#ifndef FLASHGPT_FUZZ_MESSAGE_CHECK_H
#define FLASHGPT_FUZZ_MESSAGE_CHECK_H

#include "flashgpt/status.h"

#include <stdlib.h>

static void fuzz_check_message(void)
{
    for (const unsigned char *p = (const unsigned char *)fg_last_error(); *p; p++)
        if (*p < 0x20 || *p >= 0x7F) abort();
}

#endif /* FLASHGPT_FUZZ_MESSAGE_CHECK_H */
