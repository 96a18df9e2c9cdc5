/* result: see result.h. */
#include "result.h"

static const char *const names[] = {
#define SESSION_RESULT_NAME(id, name) [id] = name,
	SESSION_RESULTS(SESSION_RESULT_NAME)
#undef SESSION_RESULT_NAME
};

const char *session_result_name(enum session_result r)
{
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "error";
}
