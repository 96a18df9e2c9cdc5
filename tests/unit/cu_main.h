/* cu_main: the shared main() of the CUnit test binaries. Each binary
 * defines register_tests(); main() exits non-zero when any test failed
 * (the runner's own return code only reports framework errors). */
#ifndef MG_CU_MAIN_H
#define MG_CU_MAIN_H

#include <CUnit/Basic.h>
#include <stdlib.h>

void register_tests(void);

#define CU_ADD(suite, fn) CU_add_test(suite, #fn, fn)

#define CU_MAIN                                                                      \
	int main(void)                                                               \
	{                                                                            \
		if (CU_initialize_registry() != CUE_SUCCESS)                         \
			return 2;                                                    \
		register_tests();                                                    \
		CU_basic_set_mode(CU_BRM_VERBOSE);                                   \
		CU_basic_run_tests();                                                \
		unsigned failed = CU_get_number_of_failures() +                      \
				  CU_get_number_of_tests_failed();                   \
		CU_cleanup_registry();                                               \
		return failed ? 1 : 0;                                               \
	}

#endif
