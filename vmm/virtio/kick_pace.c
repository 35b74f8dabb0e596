/* SPDX-License-Identifier: Apache-2.0 */
#include "kick_pace.h"

void kick_pace_note(struct kick_pace *pace, uint64_t now_ns, uint64_t idle_ns)
{
    uint64_t gap = now_ns - pace->last_ns;

    /* An average over about the last eight gaps: steady enough, and follows a change of load. */
    if (pace->last_ns && gap < idle_ns)
        pace->gap_ns = pace->gap_ns ? (7 * pace->gap_ns + gap) / 8 : gap;
    pace->last_ns = now_ns;
}

uint64_t kick_pace_window_ns(const struct kick_pace *pace, uint64_t min_ns, uint64_t max_ns)
{
    uint64_t ns = pace->gap_ns / 2;

    if (ns > max_ns)
        return max_ns;
    return ns < min_ns ? min_ns : ns;
}
