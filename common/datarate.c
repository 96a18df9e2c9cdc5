/* datarate: see datarate.h. */
#include "datarate.h"

double datarate_last(double last, double now, uint64_t n, double rate)
{
	if (rate <= 0)
		return now;
	double moved = last + (double)n / rate;
	return moved < now ? moved : now;
}
