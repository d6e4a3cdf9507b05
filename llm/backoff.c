/* backoff: see backoff.h. Jitter spreads retries of many calls that failed together (a
 * provider blip hits every in-flight call at once), as openai-python does. */
#include "backoff.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

double backoff_delay(const struct backoff_params *p, unsigned n, double retry_after_s, double u)
{
    if (!(u >= 0) || u >= 1)
        u = 0;
    if (retry_after_s >= 0) {
        double d = retry_after_s;
        if (d > p->retry_after_cap_s)
            d = p->retry_after_cap_s;
        return d;
    }
    double d = p->base_s * ldexp(1.0, n > 60 ? 60 : (int)n);
    if (d > p->cap_s)
        d = p->cap_s;
    /* jitter only lengthens the wait, so the cap plus 25% is the bound */
    return d * (1.0 + BACKOFF_JITTER_FRACTION * u);
}

double backoff_random(void)
{
    static uint64_t s;
    if (s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
        if (s == 0)
            s = 0x2545F4914F6CDD1Dull;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / 9007199254740992.0;
}
